"""A server with every connection slot taken (max_connections reached, SQLSTATE 53300) is
reported as such, to API callers and on the command line: not as a lost connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.errors import DatabaseUnavailableError, location
from exportsathi_db.servers import TemporaryCluster
from tests.reliability.support import connect
from tests.servers import admin_connection
from tests.test_cli import one_clean_error_line, run


@pytest.fixture(scope="module")
def tiny_server() -> Iterator[TemporaryCluster]:
    """A throwaway server with three connection slots, none of them kept for superusers."""
    with TemporaryCluster() as server:
        server.configure({"max_connections": 3, "superuser_reserved_connections": 0})
        server.restart()
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def full(tiny_server: TemporaryCluster) -> AsyncIterator[URL]:
    """The server's URL while every one of its slots is held by another client."""
    url = tiny_server.url()
    held: list[asyncpg.Connection] = []
    try:
        while True:
            try:
                held.append(await admin_connection(url))
            except asyncpg.TooManyConnectionsError:
                break
            assert len(held) <= 3, "max_connections was not applied"
        yield url
    finally:
        for conn in held:
            await conn.close()


async def test_no_free_slot_is_its_own_retryable_error(full: URL) -> None:
    db = connect(full)
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            async with db.session_scope() as session:
                await session.execute(text("SELECT 1"))
    finally:
        await db.dispose()
    message = str(info.value)
    assert info.value.retryable
    assert "no free connection slots" in message and "max_connections" in message
    assert "DB_POOL_SIZE" in message and "PgBouncer" in message
    assert "lost" not in message
    assert isinstance(info.value.__cause__, Exception)
    assert getattr(info.value.__cause__, "orig", None) is not None  # the driver's error is kept


async def test_no_free_slot_on_the_command_line(full: URL, tmp_path: Path) -> None:
    result = await run("check", url=full, cwd=tmp_path)
    line = one_clean_error_line(result)
    assert line.startswith(f"error: the server at {location(full)} has no free connection slots")
    assert full.password is not None and full.password not in result.printed
