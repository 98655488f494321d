"""Cancelled tasks (timeouts, task.cancel()) mid-query and mid-commit leave nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.database import DatabaseConnection
from tests.reliability.support import app_backends, connect, eventually
from tests.servers import admin_connection

TASKS = 200
# 60 connections busy, 140 tasks queued for one.
POOL: dict[str, Any] = {"db_pool_size": 40, "db_max_overflow": 20}
# Each row's deferred constraint trigger sleeps at COMMIT time: a commit takes 4 s, longer
# than the tests wait for leftovers to go.
SLOW_COMMIT_DDL = """
CREATE TABLE IF NOT EXISTS slow_commit (task int NOT NULL, part int NOT NULL);
CREATE OR REPLACE FUNCTION slow_commit_check() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
DROP TRIGGER IF EXISTS slow_commit_check ON slow_commit;
CREATE CONSTRAINT TRIGGER slow_commit_check AFTER INSERT ON slow_commit
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit_check();
"""


@pytest_asyncio.fixture(loop_scope="session")
async def db(own_url: URL) -> AsyncIterator[DatabaseConnection]:
    connection = connect(own_url, **POOL)
    yield connection
    await connection.dispose()


async def _admin(url: URL, sql: str) -> object:
    """Run SQL outside the package (several statements: simple protocol, no result)."""
    conn = await admin_connection(url)
    try:
        return await (conn.fetchval(sql) if sql.startswith("SELECT") else conn.execute(sql))
    finally:
        await conn.close()


async def _cancel_all(
    db: DatabaseConnection,
    url: URL,
    work: Callable[[int], Coroutine[Any, Any, None]],
    busy_query: str,
    again_after: float | None,
) -> list[BaseException | None]:
    """Start TASKS tasks; once the pool is full of `busy_query`, half time out and half are
    cancelled; with `again_after`, every task is cancelled (again) that many seconds later,
    while cleaning up. Returns each task's outcome."""
    app = db.settings.db_application_name

    async def with_timeout(i: int) -> None:
        async with asyncio.timeout(1.0):
            await work(i)

    tasks = [asyncio.create_task(with_timeout(i) if i % 2 else work(i)) for i in range(TASKS)]

    async def pool_busy() -> bool:
        backends = await app_backends(url, app)
        busy = [b for b in backends if b["state"] == "active" and busy_query in b["query"]]
        return len(busy) == 60

    assert await eventually(pool_busy)
    await asyncio.sleep(0.1)
    for i, task in enumerate(tasks):
        if i % 2 == 0:
            task.cancel()
    if again_after is not None:  # as anyio's cancel scopes (FastAPI, Starlette) do
        await asyncio.sleep(again_after)
        for task in tasks:
            task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return list(results)


async def _assert_nothing_left(db: DatabaseConnection, url: URL) -> None:
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    app = db.settings.db_application_name

    async def clean() -> bool:
        states = {b["state"] for b in await app_backends(url, app)}
        return not states & {"active", "idle in transaction", "idle in transaction (aborted)"}

    assert await eventually(clean, timeout=3), await app_backends(url, app)

    # The pool still serves a full load.
    async def one() -> int:
        async with db.session_scope() as session:
            return int((await session.execute(text("SELECT 1"))).scalar_one())

    assert sum(await asyncio.gather(*(one() for _ in range(100)))) == 100


@pytest.mark.parametrize("again_after", [None, 0.0, 0.005], ids=["once", "twice", "during-cleanup"])
async def test_cancelled_mid_query(
    db: DatabaseConnection, own_url: URL, again_after: float | None
) -> None:
    marker = f"{db.settings.db_application_name}-query"
    await _admin(own_url, "CREATE TABLE IF NOT EXISTS cancel_probe (marker text, task int)")

    async def work(i: int) -> None:
        async with db.session_scope() as session:
            sql = "INSERT INTO cancel_probe VALUES (:m, :i)"
            await session.execute(text(sql), {"m": marker, "i": i})
            await session.execute(text("SELECT pg_sleep(30)"))

    results = await _cancel_all(db, own_url, work, "pg_sleep", again_after)

    kinds = {type(r).__name__ for r in results}
    assert "CancelledError" in kinds and kinds <= {"CancelledError", "TimeoutError"}, kinds
    await _assert_nothing_left(db, own_url)
    sql = f"SELECT count(*) FROM cancel_probe WHERE marker = '{marker}'"
    assert await _admin(own_url, sql) == 0


@pytest.mark.parametrize("again_after", [None, 0.005], ids=["once", "during-cleanup"])
async def test_cancelled_mid_commit(
    db: DatabaseConnection, own_url: URL, again_after: float | None
) -> None:
    await _admin(own_url, SLOW_COMMIT_DDL)

    async def work(i: int) -> None:
        async with db.session_scope() as session:
            sql = "INSERT INTO slow_commit VALUES (:i, 1), (:i, 2)"
            await session.execute(text(sql), {"i": i})

    results = await _cancel_all(db, own_url, work, "COMMIT", again_after)

    kinds = {type(r).__name__ for r in results}
    assert kinds <= {"CancelledError", "TimeoutError"} and kinds, kinds
    await _assert_nothing_left(db, own_url)
    conn = await admin_connection(own_url)
    try:
        rows = await conn.fetch("SELECT task, count(*) AS n FROM slow_commit GROUP BY task")
        await conn.execute("DROP TABLE slow_commit")
    finally:
        await conn.close()
    assert all(r["n"] == 2 for r in rows), rows  # all or nothing, never 1 row
    assert rows == []  # every commit was cancelled on the server, none ran on to the end
