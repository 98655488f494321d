"""A demoted node: a write refused as read-only (SQLSTATE 25006) outside read_scope() means
the server is a standby now. It is a retryable DatabaseUnavailableError, the connection
leaves the pool, and so do the pool's other connections to that server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import DatabaseUnavailableError, ReadOnlyError, ServerReadOnlyError
from exportsathi_db.servers import HotStandby, TemporaryCluster
from tests.factories import unique
from tests.reliability.support import app_backends, connect, eventually
from tests.servers import admin_connection, wait_replica_caught_up


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def standby_url(own_server: TemporaryCluster, own_url: URL) -> AsyncIterator[URL]:
    """The migrated database (with a probe table) on a hot standby of `own_server`."""
    admin = await admin_connection(own_url)
    try:
        await admin.execute("CREATE TABLE IF NOT EXISTS demoted_probe (marker text)")
    finally:
        await admin.close()
    with HotStandby(own_server) as server:
        url = server.url(own_url.database or "")
        await wait_replica_caught_up(own_url, url)
        yield url


async def _pids(db: DatabaseConnection, n: int) -> set[int]:
    """Run n units at once, so the pool holds n connections; their backend pids."""
    barrier = asyncio.Barrier(n)

    async def one() -> int:
        async with db.session_scope() as session:
            pid = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await barrier.wait()
            return pid

    return set(await asyncio.gather(*(one() for _ in range(n))))


async def _insert(session: AsyncSession, marker: str) -> None:
    await session.execute(text("INSERT INTO demoted_probe VALUES (:m)"), {"m": marker})


async def test_a_write_through_a_pooled_connection_to_a_standby(
    standby_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    db = connect(standby_url, db_pool_size=3, db_max_overflow=0)
    try:
        pooled = await _pids(db, 3)  # three pooled connections to the standby
        assert db.engine.pool.checkedin() == 3  # type: ignore[attr-defined]

        with (
            caplog.at_level(logging.WARNING, logger="exportsathi_db"),
            pytest.raises(ServerReadOnlyError) as info,
        ):
            async with db.session_scope() as session:
                used = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                await _insert(session, unique("standby"))
        assert used in pooled
        error = info.value
        assert isinstance(error, DatabaseUnavailableError) and error.retryable
        assert "25006" in str(error) and "standby" in str(error)
        assert "a standby, e.g. a demoted primary" in caplog.text

        # That connection is closed, and the two idle ones are retired: none is reused.
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        app = db.settings.db_application_name

        async def gone() -> bool:
            return used not in {b["pid"] for b in await app_backends(standby_url, app)}

        assert await eventually(gone)  # closed, not pooled
        after = await _pids(db, 3)
        assert not after & pooled

        async def none_left() -> bool:
            return not {b["pid"] for b in await app_backends(standby_url, app)} & pooled

        assert await eventually(none_left)

        # In read_scope() the same refusal stays a ReadOnlyError (not retryable, pool kept).
        before = await _pids(db, 3)
        with pytest.raises(ReadOnlyError) as read_only:
            async with db.read_scope() as session:
                await _insert(session, unique("read-scope"))
        assert not isinstance(read_only.value, DatabaseUnavailableError)
        assert await _pids(db, 3) == before

        # run() retries it, and raises it when every attempt lands on the standby.
        calls = 0

        async def unit(session: AsyncSession) -> None:
            nonlocal calls
            calls += 1
            await _insert(session, unique("run"))

        with pytest.raises(ServerReadOnlyError):
            await db.run(unit, retries=2)
        assert calls == 3
    finally:
        await db.dispose()


async def test_run_succeeds_once_the_server_takes_writes_again(own_url: URL) -> None:
    """The pool's connections were opened while the database was read-only (as on a
    standby); new connections are not (as after a failover, behind a virtual IP). run()
    fails on a pooled one, retires them all, and the retry, on a new connection, commits."""
    name = own_url.database
    admin = await admin_connection(own_url)
    db = connect(own_url, db_pool_size=3, db_max_overflow=0, db_retry_backoff_base=0.01)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        pooled = await _pids(db, 3)
        await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')

        marker, calls = unique("promoted"), 0

        async def unit(session: AsyncSession) -> None:
            nonlocal calls
            calls += 1
            await _insert(session, marker)

        await db.run(unit)
        print(f"\ndemoted node: {calls} attempts")
        assert calls == 2
        count = "SELECT count(*) FROM demoted_probe WHERE marker = $1"
        assert await admin.fetchval(count, marker) == 1
        # Every connection opened before is replaced, none is reused.
        assert not await _pids(db, 3) & pooled
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await admin.close()
        await db.dispose()


async def test_no_writable_server_in_the_url_is_retryable(standby_url: URL) -> None:
    """A URL asking for a read-write server (target_session_attrs, as with several hosts
    during a failover) that finds only a standby: retryable, and says what happened."""
    url = standby_url.update_query_dict({"target_session_attrs": "read-write"})
    db = connect(url)
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            async with db.session_scope() as session:
                await session.execute(text("SELECT 1"))
        assert info.value.retryable and "target_session_attrs" in str(info.value)
    finally:
        await db.dispose()
