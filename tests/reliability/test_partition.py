"""A silent network partition between the pool and the server (a TCP proxy that stops
forwarding, tests/reliability/tcp_proxy.py): every wait is bounded by the settings, the
failure is a typed retryable error, and the pool recovers when the partition heals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import (
    CommitOutcomeUnknownError,
    ConnectionTimeoutError,
    DatabaseUnavailableError,
)
from exportsathi_db.repositories.users import UserRepository
from exportsathi_db.servers import TemporaryCluster
from tests.factories import PASSWORD_HASH, unique
from tests.reliability.support import app_backends, connect, eventually
from tests.reliability.tcp_proxy import PartitionProxy
from tests.servers import admin_connection

COMMAND_TIMEOUT = 1.0
CONNECT_TIMEOUT = 1.0
# What a failure may take beyond the timeout that triggers it: the cleanup closes the
# connection without waiting for the server, so only scheduling noise is left.
SLACK = 0.75
PROFILE: dict[str, Any] = {
    "password_hash": PASSWORD_HASH,
    "business_type": "SaaS",
    "company_size": "Micro",
}


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(own_url: URL) -> AsyncIterator[PartitionProxy]:
    async with PartitionProxy(own_url.host or "127.0.0.1", own_url.port or 5432) as p:
        yield p


@pytest_asyncio.fixture(loop_scope="session")
async def db(own_url: URL, proxy: PartitionProxy) -> AsyncIterator[DatabaseConnection]:
    connection = connect(
        own_url.set(port=proxy.port),
        db_command_timeout=COMMAND_TIMEOUT,
        db_connect_timeout=CONNECT_TIMEOUT,
        db_cleanup_timeout=1.0,
        db_pool_size=2,
        db_max_overflow=2,
        db_pool_timeout=5,
    )
    yield connection
    proxy.heal()
    await connection.dispose()


async def _warm(db: DatabaseConnection) -> None:
    async with db.session_scope() as session:
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def _recovered(db: DatabaseConnection, proxy: PartitionProxy) -> None:
    """After the partition heals, units of work succeed again (through run(), as an app
    would run them), and nothing is left checked out."""
    proxy.heal()

    async def one(session: AsyncSession) -> int:
        return int((await session.execute(text("SELECT 1"))).scalar_one())

    started = time.monotonic()
    results = await asyncio.gather(*(db.run(one) for _ in range(8)))
    print(f"  after healing: 8 units in {time.monotonic() - started:.2f} s")
    assert results == [1] * 8
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_partition_mid_unit_fails_in_time_and_the_pool_recovers(
    db: DatabaseConnection, proxy: PartitionProxy, own_url: URL
) -> None:
    await _warm(db)
    started = time.monotonic()
    with pytest.raises(ConnectionTimeoutError) as info:
        async with db.session_scope() as session:
            await session.execute(text("SELECT 1"))
            proxy.blackhole()
            started = time.monotonic()
            await session.execute(text("SELECT 2"))
    took = time.monotonic() - started
    print(
        f"\nmid-statement partition (SQLAlchemy path): failed after {took:.2f} s "
        f"(DB_COMMAND_TIMEOUT {COMMAND_TIMEOUT} s)"
    )
    assert isinstance(info.value, DatabaseUnavailableError) and info.value.retryable
    assert "DB_COMMAND_TIMEOUT" in str(info.value)
    assert COMMAND_TIMEOUT * 0.9 < took < COMMAND_TIMEOUT + SLACK
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    await _recovered(db, proxy)


async def test_partition_on_the_driver_path_fails_in_time(
    db: DatabaseConnection, proxy: PartitionProxy
) -> None:
    """The repositories' later statements go straight to asyncpg: bounded the same way."""
    await _warm(db)
    email = f"{unique('partition')}@example.in"
    with pytest.raises(ConnectionTimeoutError):
        async with db.session_scope() as session:
            users = UserRepository(session)
            await users.get_by_email(email)  # BEGIN + first statement: SQLAlchemy
            proxy.blackhole()
            started = time.monotonic()
            await users.create(email=email, **PROFILE)  # straight to the driver
    took = time.monotonic() - started
    print(f"\nmid-statement partition (driver path): failed after {took:.2f} s")
    assert took < COMMAND_TIMEOUT + SLACK
    await _recovered(db, proxy)
    async with db.session_scope() as session:  # the partitioned unit was not committed
        assert await UserRepository(session).get_by_email(email) is None


async def test_partition_during_commit_is_commit_outcome_unknown_in_time(
    db: DatabaseConnection, proxy: PartitionProxy
) -> None:
    await _warm(db)
    started = time.monotonic()
    with pytest.raises(CommitOutcomeUnknownError):
        async with db.session_scope() as session:
            await session.execute(text("SELECT 1"))
            proxy.blackhole()
            started = time.monotonic()
    took = time.monotonic() - started
    print(f"\npartition during COMMIT: CommitOutcomeUnknownError after {took:.2f} s")
    assert took < COMMAND_TIMEOUT + SLACK
    await _recovered(db, proxy)


async def test_partition_before_the_unit_fails_in_time(
    db: DatabaseConnection, proxy: PartitionProxy
) -> None:
    """Pooled connections and new ones alike: no unit waits longer than the bound."""
    await _warm(db)
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError):
        async with db.session_scope() as session:
            await session.execute(text("SELECT 1"))
    took = time.monotonic() - started
    print(f"\npartition before BEGIN on a pooled connection: failed after {took:.2f} s")
    assert took < COMMAND_TIMEOUT + SLACK

    fresh = connect(db.url, db_command_timeout=COMMAND_TIMEOUT, db_connect_timeout=CONNECT_TIMEOUT)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError) as info:
            async with fresh.session_scope() as session:
                await session.execute(text("SELECT 1"))
        took = time.monotonic() - started
        print(
            f"partition while connecting: {type(info.value).__name__} after {took:.2f} s "
            f"(DB_CONNECT_TIMEOUT {CONNECT_TIMEOUT} s)"
        )
        assert took < CONNECT_TIMEOUT + SLACK
    finally:
        await fresh.dispose()
    await _recovered(db, proxy)


async def test_run_retries_through_a_partition_that_heals(
    db: DatabaseConnection, proxy: PartitionProxy, own_url: URL
) -> None:
    """A unit of work run through run() while the network is partitioned succeeds once it
    heals: the first attempt fails within DB_COMMAND_TIMEOUT, a later one gets through."""
    await _warm(db)
    admin = await admin_connection(own_url)
    try:
        await admin.execute("CREATE TABLE IF NOT EXISTS partition_probe (marker text)")
    finally:
        await admin.close()
    marker = unique("healed")
    attempts = 0

    async def unit(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            proxy.blackhole()
            asyncio.get_running_loop().call_later(COMMAND_TIMEOUT * 1.5, proxy.heal)
        await session.execute(text("INSERT INTO partition_probe VALUES (:m)"), {"m": marker})

    db.settings.db_retry_backoff_base = 0.5
    started = time.monotonic()
    await db.run(unit, retries=5)
    print(
        f"\nrun() through a {COMMAND_TIMEOUT * 1.5:.1f} s partition: {attempts} attempts, "
        f"{time.monotonic() - started:.2f} s"
    )
    assert attempts >= 2
    admin = await admin_connection(own_url)
    try:
        n = await admin.fetchval("SELECT count(*) FROM partition_probe WHERE marker = $1", marker)
        assert n == 1
    finally:
        await admin.close()


async def test_cancellation_under_a_partition_cleans_up_in_time(
    db: DatabaseConnection, proxy: PartitionProxy, own_url: URL
) -> None:
    """A unit cancelled (asyncio.timeout) while the network is partitioned: the cleanup,
    which closes the connection, does not hang either."""
    await _warm(db)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3), db.session_scope() as session:
            await session.execute(text("SELECT 1"))
            proxy.blackhole()
            await session.execute(text("SELECT pg_sleep(0)"))
    took = time.monotonic() - started
    print(f"\ncancelled under a partition: TimeoutError after {took:.2f} s (0.3 s asked)")
    assert took < 0.3 + 2.0 + SLACK  # SQLAlchemy's graceful close waits at most 2 s
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    await _recovered(db, proxy)
    app = db.settings.db_application_name
    assert await eventually(lambda: _none_idle_in_transaction(own_url, app), timeout=10)


async def _none_idle_in_transaction(url: URL, app: str) -> bool:
    return not [b for b in await app_backends(url, app) if b["state"] == "idle in transaction"]


async def test_the_server_keeps_alive_and_drops_vanished_clients(
    own_server: TemporaryCluster, own_url: URL
) -> None:
    """DB_SERVER_KEEPALIVE_IDLE reaches the server on every connection (asyncpg has no
    client-side keepalive option; the client is bounded by DB_COMMAND_TIMEOUT instead)."""
    show = text(
        "SELECT current_setting('tcp_keepalives_idle'), "
        "current_setting('tcp_keepalives_interval'), current_setting('tcp_keepalives_count')"
    )
    for idle, expected in ((60, ("60", "12", "5")), (10, ("10", "2", "5"))):
        db = connect(own_url, db_server_keepalive_idle=idle)
        try:
            async with db.session_scope() as session:
                assert tuple((await session.execute(show)).one()) == expected
        finally:
            await db.dispose()
    db = connect(own_url, db_server_keepalive_idle=None)
    try:
        async with db.session_scope() as session:
            assert (await session.execute(show)).one()[0] != "60"  # the server's default
    finally:
        await db.dispose()
    # On a unix socket the server ignores them: no error.
    socket_url = own_url.set(host=None, query={"host": str(own_server.socket_dir)})
    db = connect(socket_url)
    try:
        async with db.session_scope() as session:
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()
