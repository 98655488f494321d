"""Pytest fixtures for code built on exportsathi_db: a throwaway migrated database per run and
a rolled-back session per test. In your `conftest.py`:

    pytest_plugins = ["exportsathi_db.testing"]

and run pytest-asyncio on one session-scoped loop (one engine per test run):

    [tool.pytest.ini_options]
    asyncio_mode = "auto"
    asyncio_default_fixture_loop_scope = "session"
    asyncio_default_test_loop_scope = "session"

The server: `TEST_DATABASE_URL` if set (a role allowed to CREATE DATABASE); else a
testcontainers PostgreSQL when a Docker engine answers; else a local server started here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.config import parse_database_url
from exportsathi_db.database import DatabaseConnection
from exportsathi_db.dependencies import get_db, get_read_db
from exportsathi_db.migrations import init_db


def docker_available(timeout: float = 0.5) -> bool:
    """True when a Docker engine answers `/_ping` within `timeout` (a dead socket can't stall)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return host.startswith("tcp://")  # remote engines: let testcontainers try
    path = host.removeprefix("unix://")
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b"OK" in sock.recv(1024)
    except OSError:
        return False


@contextlib.contextmanager
def postgres_server() -> Iterator[URL]:
    """The admin URL of a PostgreSQL server for a test run, cleaned up on exit."""
    if os.environ.get("TEST_DATABASE_URL"):
        url, _ = parse_database_url(os.environ["TEST_DATABASE_URL"])
        yield url
    elif docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            url, _ = parse_database_url(container.get_connection_url())
            yield url
    else:
        from exportsathi_db.servers import TemporaryCluster

        with TemporaryCluster() as cluster:
            yield cluster.url("postgres")


def _connect_args(url: URL) -> dict[str, Any]:
    return {
        "host": url.host or url.query.get("host"),
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }


async def create_database(admin_url: URL, prefix: str = "exportsathi_test") -> URL:
    """Create an empty database on the server of `admin_url`; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(**_connect_args(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.set(database=name)


async def drop_database(url: URL) -> None:
    admin = url.set(database="postgres")
    conn = await asyncpg.connect(**_connect_args(admin))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[URL]:
    """A PostgreSQL server for the whole run (its maintenance database)."""
    with postgres_server() as url:
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(postgres_admin_url: URL) -> AsyncIterator[URL]:
    """A database of its own for the run, migrated to head once."""
    url = await create_database(postgres_admin_url)
    db = DatabaseConnection(url)
    try:
        await init_db(db)
    finally:
        await db.dispose()
    yield url
    await drop_database(url)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db(database_url: URL) -> AsyncIterator[DatabaseConnection]:
    """The run's one connection manager (one engine, one loop); disposed at the end."""
    connection = DatabaseConnection(database_url)
    yield connection
    await connection.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def db_session(db: DatabaseConnection) -> AsyncIterator[AsyncSession]:
    """A session inside an outer transaction that is rolled back after the test.

    `commit()` in the code under test only releases a savepoint, so tests stay isolated.
    """
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database(
    postgres_admin_url: URL,
) -> AsyncIterator[Callable[[], Awaitable[URL]]]:
    """A factory of extra empty databases (for migration tests); all dropped after the test."""
    made: list[URL] = []

    async def make() -> URL:
        made.append(await create_database(postgres_admin_url, "exportsathi_empty"))
        return made[-1]

    yield make
    for url in made:
        await drop_database(url)


@contextlib.contextmanager
def override_get_db(app: FastAPI, session: AsyncSession) -> Iterator[None]:
    """Make every session dependency of this package (`get_db` behind `DbSession`,
    `get_read_db` behind `ReadDbSession`) yield `session` (e.g. `db_session`) inside the
    `with` block, so a test reads its own writes whichever dependency a route uses.

    The session keeps the unit-of-work contract: committed when the handler returns
    (a savepoint, with `db_session`), rolled back when it raises.
    """

    async def _test_session() -> AsyncIterator[AsyncSession]:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise

    dependencies = (get_db, get_read_db)
    for dependency in dependencies:
        app.dependency_overrides[dependency] = _test_session
    try:
        yield
    finally:
        for dependency in dependencies:
            app.dependency_overrides.pop(dependency, None)
