"""Settings from the environment reach the engine; URLs are normalised or refused clearly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.config import Settings, parse_database_url
from exportsathi_db.database import DatabaseConnection, check_db_connection
from exportsathi_db.errors import ConfigurationError, DatabaseUnavailableError
from tests.helpers import CANARY

SETTINGS_VARIABLES = (
    "DATABASE_URL",
    "ENVIRONMENT",
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
    "DB_POOL_TIMEOUT",
    "DB_POOL_RECYCLE",
    "DB_ECHO",
    "DB_SSLMODE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No inherited settings, and no `.env` in the working directory."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


def test_pool_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DB_POOL_SIZE": "3",
        "DB_MAX_OVERFLOW": "7",
        "DB_POOL_TIMEOUT": "2.5",
        "DB_POOL_RECYCLE": "120",
        "DB_ECHO": "true",
    }.items():
        monkeypatch.setenv(name, value)
    engine = DatabaseConnection("postgresql://u@db.internal/app", settings=Settings()).engine
    pool = engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout, pool._recycle) == (3, 7, 2.5, 120)  # type: ignore[attr-defined]
    assert engine.echo is True


def test_defaults_without_environment() -> None:
    engine = DatabaseConnection("postgresql://u@db.internal/app", settings=Settings()).engine
    pool = engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout, pool._recycle) == (10, 20, 30, 3600)  # type: ignore[attr-defined]
    assert engine.echo is False


async def test_a_dead_pooled_connection_is_replaced_on_checkout(
    db: DatabaseConnection, database_url: URL
) -> None:
    """Pre-ping: a connection the server dropped while pooled never reaches the caller."""
    fresh = DatabaseConnection(database_url, settings=Settings())
    pid_sql = text("SELECT pg_backend_pid()")
    try:
        async with fresh.engine.connect() as conn:
            pid = (await conn.execute(pid_sql)).scalar_one()
        async with db.engine.connect() as admin:  # the server kills the idle pooled connection
            killed = text("SELECT pg_terminate_backend(:pid)")
            assert (await admin.execute(killed, {"pid": pid})).scalar_one() is True
        await asyncio.sleep(0.2)
        async with fresh.session_scope() as session:
            assert (await session.execute(pid_sql)).scalar_one() != pid
    finally:
        await fresh.dispose()


async def test_the_pool_limit_is_real(monkeypatch: pytest.MonkeyPatch, database_url: URL) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("DB_POOL_TIMEOUT", "0.5")
    db = DatabaseConnection(database_url, settings=Settings())
    try:
        async with db.engine.connect() as only:
            await only.execute(text("SELECT 1"))
            start = time.monotonic()
            with pytest.raises(DatabaseUnavailableError, match="DB_POOL_TIMEOUT"):
                async with db.session_scope() as session:
                    await session.execute(text("SELECT 1"))
            assert time.monotonic() - start < 3
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u:p@h:6543/app",
        "postgresql://u:p@h:6543/app",
        "postgresql+asyncpg://u:p@h:6543/app",
    ],
)
def test_postgres_urls_are_normalised_to_asyncpg(raw: str) -> None:
    url = DatabaseConnection(raw, settings=Settings()).url
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "h",
        6543,
        "app",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (f"mysql://u:{CANARY}@h/app", "must be a PostgreSQL URL"),
        ("sqlite:///app.db", "must be a PostgreSQL URL"),
        ("not a url at all", "not a valid URL"),
        ("", "not a valid URL"),
        (f"postgresql://u:{CANARY}@h", "names no database"),
        (f"postgresql://u:{CANARY}@h/app?sslmode=sometimes", "sslmode must be one of"),
    ],
)
def test_other_urls_are_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as direct:
        _ = DatabaseConnection(raw, settings=Settings()).engine
    monkeypatch.setenv("DATABASE_URL", raw)
    with pytest.raises(ConfigurationError, match=message) as from_env:
        _ = DatabaseConnection(settings=Settings()).engine
    for error in (direct.value, from_env.value):
        assert CANARY not in f"{error} {error!r} {error.__cause__!r}"


def test_production_requires_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    db = DatabaseConnection(settings=Settings())
    with pytest.raises(ConfigurationError, match="DATABASE_URL is required"):
        _ = db.engine


@pytest.mark.parametrize(("name", "value"), [("DB_POOL_SIZE", "abc"), ("DB_POOL_SIZE", "0")])
def test_bad_settings_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{CANARY}@h/app")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="db_pool_size") as error:
        Settings()
    assert CANARY not in str(error.value)


def test_sslmode_is_split_off_the_url_for_asyncpg() -> None:
    url, sslmode = parse_database_url("postgres://u@h/app?sslmode=require&application_name=x")
    assert sslmode == "require"
    assert dict(url.query) == {"application_name": "x"}


@pytest.mark.parametrize(
    ("sslmode", "reachable"),
    [("disable", True), ("prefer", True), ("allow", True), ("require", False)],
)
async def test_sslmode_reaches_the_connection(
    database_url: URL, sslmode: str, reachable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test server has no TLS: `require` cannot connect, the lenient modes can."""
    in_url = DatabaseConnection(database_url.update_query_dict({"sslmode": sslmode}))
    monkeypatch.setenv("DB_SSLMODE", sslmode)
    in_settings = DatabaseConnection(database_url, settings=Settings())
    try:
        results = await asyncio.gather(
            check_db_connection(in_url), check_db_connection(in_settings)
        )
    finally:
        await in_url.dispose()
        await in_settings.dispose()
    assert list(results) == [reachable, reachable]


def test_timeouts_behind_pgbouncer_are_refused_with_a_clear_message() -> None:
    from exportsathi_db.config import Settings
    from exportsathi_db.database import DatabaseConnection
    from exportsathi_db.errors import ConfigurationError

    settings = Settings(
        database_url="postgresql://u:p@127.0.0.1:6432/db",  # type: ignore[arg-type]
        db_pgbouncer=True,
        db_statement_timeout_ms=1000,
    )
    with pytest.raises(ConfigurationError, match="ALTER ROLE"):
        _ = DatabaseConnection(settings=settings).engine
