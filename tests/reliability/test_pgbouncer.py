"""A real PgBouncer in transaction pooling mode: prepared statements break without
`DB_PGBOUNCER`, and a 1,000-unit concurrent load is exact with it."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.repositories import metrics
from exportsathi_db.repositories.users import UserRepository
from exportsathi_db.servers import TemporaryCluster
from tests.factories import PASSWORD_HASH, unique
from tests.reliability.support import connect
from tests.servers import admin_connection, pgbouncer

PROFILE: dict[str, Any] = {
    "password_hash": PASSWORD_HASH,
    "business_type": "Merchant",
    "company_size": "Medium",
}
PREPARED_ERROR = re.compile(r"prepared statement \S+ (does not exist|already exists)")
WORKERS, UNITS_PER_WORKER = 50, 20  # 1,000 units of work over 50 concurrent tasks


@pytest.fixture(scope="module")
def bouncer_url(own_server: TemporaryCluster, own_url: URL) -> Iterator[URL]:
    """The migrated database, reached through PgBouncer (5 server connections per pool)."""
    with pgbouncer(own_server) as url:
        yield url.set(database=own_url.database)


async def test_through_pgbouncer_without_pgbouncer_mode_prepared_statements_break(
    bouncer_url: URL,
) -> None:
    db = connect(bouncer_url, db_pool_size=20, db_max_overflow=0)
    errors: list[BaseException] = []

    async def unit() -> None:
        try:
            async with db.session_scope() as session:
                await UserRepository(session).get_or_none(uuid.uuid4())
                await session.execute(text("SELECT count(*) FROM users"))
        except Exception as exc:
            errors.append(exc)

    try:
        for _ in range(5):
            await asyncio.gather(*(unit() for _ in range(20)))
    finally:
        await db.dispose()
    # Our error names the SQLSTATE; the driver's message, kept as the cause, names the statement.
    texts = [f"{e} {e.__cause__}" for e in errors]
    prepared = [m.group(0) for text in texts if (m := PREPARED_ERROR.search(text))]
    print(
        f"\nwithout DB_PGBOUNCER: {len(errors)} of 100 units failed, {len(prepared)} with "
        f"prepared-statement errors, e.g. {prepared[:1]}"
    )
    assert prepared


async def test_through_pgbouncer_with_pgbouncer_mode_a_concurrent_load_is_exact(
    bouncer_url: URL, own_url: URL
) -> None:
    db = connect(bouncer_url, db_pgbouncer=True, db_pool_size=WORKERS, db_max_overflow=0)
    prefix = unique("bouncer")
    errors: list[BaseException] = []

    async def worker(w: int) -> tuple[uuid.UUID, int, str]:
        """One user's life: signup, then reads, renames and metric bumps; what to expect."""
        email, bumps, name = f"{prefix}-{w}@example.in", 0, ""
        async with db.session_scope() as session:
            user_id = (await UserRepository(session).create(email=email, **PROFILE)).id
        for k in range(1, UNITS_PER_WORKER):
            try:
                async with db.session_scope() as session:
                    users = UserRepository(session)
                    if k % 4 == 0:
                        assert (await users.get(user_id)).email == email
                    elif k % 4 == 1:
                        name = f"Exporter {w}-{k}"
                        assert (await users.update(user_id, company_name=name)).company_name == name
                    elif k % 4 == 2:
                        await metrics.add(session, user_id, reports_generated=1)
                    else:
                        assert (await users.get_by_email(email.upper())) is not None
                        await metrics.add(session, user_id, reports_generated=2)
                bumps += {2: 1, 3: 2}.get(k % 4, 0)
            except Exception as exc:
                errors.append(exc)
        return user_id, bumps, name

    started = time.monotonic()
    conn = await admin_connection(own_url)  # the server itself, not through the pooler
    try:
        done = asyncio.Event()
        sampler = asyncio.create_task(_most_backends(conn, own_url.database or "", done))
        expected = await asyncio.gather(*(worker(w) for w in range(WORKERS)))
        done.set()
        busiest = await sampler
    finally:
        await db.dispose()
    elapsed = time.monotonic() - started
    print(
        f"\nthrough PgBouncer: {WORKERS * UNITS_PER_WORKER} units, {WORKERS} concurrent, "
        f"{elapsed:.2f} s, {len(errors)} errors, at most {busiest} server connections"
    )
    assert errors == []
    assert 1 <= busiest <= 5  # 50 clients really shared PgBouncer's 5 server connections

    try:
        rows = await conn.fetch(
            "SELECT u.id, u.company_name, m.reports_generated FROM users u "
            "JOIN user_metrics m ON m.user_id = u.id WHERE u.email LIKE $1",
            f"{prefix}-%",
        )
    finally:
        await conn.close()
    assert {(r["id"], r["reports_generated"], r["company_name"]) for r in rows} == set(expected)


async def _most_backends(conn: asyncpg.Connection, database: str, done: asyncio.Event) -> int:
    """Sample the server's client backends on `database` until `done`; the most seen at once."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    most = 0
    while not done.is_set():
        most = max(most, int(await conn.fetchval(sql, database)))
        await asyncio.sleep(0.01)
    return most
