"""Server restarts and killed backends: the pool heals, in-flight work fails retryably."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import CommitOutcomeUnknownError, DatabaseUnavailableError
from exportsathi_db.repositories.users import UserRepository
from exportsathi_db.servers import TemporaryCluster
from tests.factories import PASSWORD_HASH, unique
from tests.reliability.support import app_backends, connect, eventually
from tests.servers import admin_connection

PROFILE: dict[str, Any] = {
    "password_hash": PASSWORD_HASH,
    "business_type": "Merchant",
    "company_size": "Micro",
}


async def _hold_connections(db: DatabaseConnection, n: int) -> set[int]:
    """Run n units of work at once (so the pool opens n connections); their backend pids."""
    barrier = asyncio.Barrier(n)

    async def one() -> int:
        async with db.session_scope() as session:
            pid = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await barrier.wait()
            return pid

    return set(await asyncio.gather(*(one() for _ in range(n))))


async def _started_at(db: DatabaseConnection) -> object:
    async with db.session_scope() as session:
        return (await session.execute(text("SELECT pg_postmaster_start_time()"))).scalar_one()


async def test_restart_with_idle_pooled_connections(
    own_server: TemporaryCluster, own_url: URL
) -> None:
    db = connect(own_url, db_pool_size=5, db_max_overflow=0)
    try:
        before_pids = await _hold_connections(db, 5)
        before = await _started_at(db)
        assert db.engine.pool.checkedin() == 5  # type: ignore[attr-defined]

        await asyncio.to_thread(own_server.restart)

        # Every pooled connection is dead; pre-ping replaces them without an error.
        assert await _started_at(db) != before
        after_pids = await _hold_connections(db, 5)
        assert len(after_pids) == 5 and not after_pids & before_pids
    finally:
        await db.dispose()


async def test_unit_of_work_in_flight_during_restart(
    own_server: TemporaryCluster, own_url: URL
) -> None:
    db = connect(own_url)
    email = f"{unique('inflight')}@example.in"
    app = db.settings.db_application_name

    async def work() -> None:
        async with db.session_scope() as session:
            await UserRepository(session).create(email=email, **PROFILE)
            await session.execute(text("SELECT pg_sleep(30)"))

    try:
        task = asyncio.create_task(work())

        async def sleeping() -> bool:
            return any("pg_sleep" in (b["query"] or "") for b in await app_backends(own_url, app))

        assert await eventually(sleeping)
        await asyncio.to_thread(own_server.restart)

        try:
            await task
        except DatabaseUnavailableError as exc:
            assert exc.retryable
            assert "retry" in str(exc)
        else:
            raise AssertionError("the unit of work survived a server restart")

        # Nothing half-written, and the next unit of work just works.
        async with db.session_scope() as session:
            assert await UserRepository(session).get_by_email(email) is None
        conn = await admin_connection(own_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0
        finally:
            await conn.close()
    finally:
        await db.dispose()


async def test_terminated_backends_mid_load(own_url: URL) -> None:
    db = connect(own_url, db_pool_size=10, db_max_overflow=0)
    app = db.settings.db_application_name
    outcomes: list[tuple[float, BaseException | None]] = []  # (start time, error)
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with db.session_scope() as session:
                    await session.execute(text("SELECT pg_sleep(0.005)"))
                    await session.execute(text("SELECT count(*) FROM users"))
                outcomes.append((started, None))
            except Exception as exc:
                outcomes.append((started, exc))

    workers = [asyncio.create_task(worker()) for _ in range(20)]
    try:
        await asyncio.sleep(0.5)
        conn = await admin_connection(own_url)
        try:
            killed = {
                int(r[0])
                for r in await conn.fetch(
                    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    app,
                )
            }

            async def all_gone() -> bool:
                sql = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])"
                return int(await conn.fetchval(sql, list(killed))) == 0

            assert await eventually(all_gone)
        finally:
            await conn.close()
        await asyncio.sleep(0.2)  # a backend leaves pg_stat_activity just before its socket closes
        recovered = time.monotonic()
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*workers)
        await db.dispose()

    assert len(killed) == 10  # the whole pool was busy, and all of it was killed
    failed = [e for _, e in outcomes if e is not None]
    after = [e for started, e in outcomes if started >= recovered]
    print(
        f"\nterminate mid-load: {len(outcomes)} units, {len(killed)} backends killed, "
        f"{len(failed)} failed ({sorted({type(e).__name__ for e in failed})}), "
        f"{len(after)} after recovery"
    )
    # Killed before COMMIT: retryable. Killed while COMMIT was in flight: outcome unknown,
    # typed as such and not retryable as is (the unit may have committed).
    assert all(
        (isinstance(e, DatabaseUnavailableError) and e.retryable)
        or (isinstance(e, CommitOutcomeUnknownError) and not e.retryable)
        for e in failed
    ), failed
    assert len(failed) <= len(killed)  # a dead connection fails at most the unit using it
    assert len(after) > 100
    assert all(e is None for e in after)
