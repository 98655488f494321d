"""A real streaming replica: reads go there, writes are refused, a dead replica falls back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.dependencies import ReadDbSession, add_error_handlers
from exportsathi_db.errors import ReadOnlyError
from exportsathi_db.repositories.users import UserRepository
from exportsathi_db.servers import HotStandby, TemporaryCluster
from tests.factories import PASSWORD_HASH, unique
from tests.reliability.support import connect
from tests.servers import admin_connection, wait_replica_caught_up

PROFILE: dict[str, Any] = {
    "password_hash": PASSWORD_HASH,
    "business_type": "SaaS",
    "company_size": "Micro",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replica(own_server: TemporaryCluster, own_url: URL) -> AsyncIterator[HotStandby]:
    """A hot standby of `own_server` (made after the migrations), caught up."""
    with HotStandby(own_server) as server:
        await wait_replica_caught_up(own_url, server.url(own_url.database or ""))
        yield server


@pytest.fixture
def replica_url(replica: HotStandby, own_url: URL) -> URL:
    """The migrated database, on the replica."""
    return replica.url(own_url.database or "")


@pytest_asyncio.fixture(loop_scope="session")
async def db(own_url: URL, replica_url: URL) -> AsyncIterator[DatabaseConnection]:
    connection = connect(own_url, read_url=replica_url)
    yield connection
    await connection.dispose()


async def _where(session: AsyncSession) -> tuple[bool, int]:
    """(in recovery, server port) of the server the session talks to."""
    row = await session.execute(text("SELECT pg_is_in_recovery(), inet_server_port()"))
    recovery, port = row.one()
    return bool(recovery), int(port)


async def test_reads_go_to_the_replica_and_writes_to_the_primary(
    db: DatabaseConnection, own_url: URL, replica_url: URL
) -> None:
    assert db.has_replica
    async with db.read_scope() as session:
        assert await _where(session) == (True, replica_url.port)
    async with db.session_scope() as session:
        assert await _where(session) == (False, own_url.port)


async def test_a_write_in_read_scope_raises_read_only(db: DatabaseConnection, own_url: URL) -> None:
    email = f"{unique('readonly')}@example.in"
    for connection in (db, connect(own_url)):  # on the replica, and on the primary
        try:
            with pytest.raises(ReadOnlyError):
                async with connection.read_scope() as session:
                    await UserRepository(session).create(email=email, **PROFILE)
        finally:
            await connection.dispose()
    conn = await admin_connection(own_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0
    finally:
        await conn.close()


async def test_a_primary_commit_reaches_the_replica(db: DatabaseConnection) -> None:
    email = f"{unique('lag')}@example.in"
    async with db.read_scope() as session:  # connect to the replica first: measure only lag
        assert (await _where(session))[0]
    async with db.session_scope() as session:
        user_id = (await UserRepository(session).create(email=email, **PROFILE)).id
    committed = time.monotonic()
    deadline, found = committed + 10, None
    while found is None and time.monotonic() < deadline:
        async with db.read_scope() as session:
            found = await UserRepository(session).get_or_none(user_id)
        if found is None:
            await asyncio.sleep(0.005)
    lag_ms = (time.monotonic() - committed) * 1000
    # The throwaway primary runs with synchronous_commit=off: WAL reaches the replica when the
    # WAL writer flushes (wal_writer_delay, 200 ms), so expect up to ~200 ms here.
    print(f"\nreplication lag: a committed row was readable on the replica after {lag_ms:.1f} ms")
    assert found is not None and found.email == email


async def test_a_stopped_replica_falls_back_to_the_primary(
    db: DatabaseConnection,
    replica: HotStandby,
    own_url: URL,
    replica_url: URL,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with db.read_scope() as session:  # a pooled replica connection, about to die
        assert (await _where(session))[0]
    await asyncio.to_thread(replica.stop)
    try:
        with caplog.at_level(logging.WARNING, logger="exportsathi_db"):
            async with db.read_scope() as session:
                assert await _where(session) == (False, own_url.port)
                assert await session.scalar(text("SELECT count(*) >= 0 FROM users"))
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any("read replica unavailable" in r.getMessage() for r in warnings)
        async with db.read_scope() as session:  # within the retry delay: straight to the primary
            assert not (await _where(session))[0]
    finally:
        await asyncio.to_thread(replica.start)
        await wait_replica_caught_up(own_url, replica_url)


async def test_without_a_replica_reads_go_to_the_primary(own_url: URL) -> None:
    db = connect(own_url)
    try:
        assert not db.has_replica
        async with db.read_scope() as session:
            assert await _where(session) == (False, own_url.port)
    finally:
        await db.dispose()


async def test_fastapi_read_db_session(
    db: DatabaseConnection, replica_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("exportsathi_db.dependencies.db_connection", db)
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/where")
    async def where(session: ReadDbSession) -> dict[str, Any]:
        recovery, port = await _where(session)
        return {"in_recovery": recovery, "port": port}

    @app.post("/signup")
    async def signup(session: ReadDbSession) -> dict[str, str]:
        user = await UserRepository(session).create(email=f"{unique('api')}@x.in", **PROFILE)
        return {"id": str(user.id)}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/where")
        assert response.json() == {"in_recovery": True, "port": replica_url.port}
        response = await client.post("/signup")
        assert response.status_code == 500
        assert response.json()["error"] == "ReadOnlyError"
