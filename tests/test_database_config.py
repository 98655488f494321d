"""Settings from the environment reach the engine; URLs are normalised or refused clearly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from exportsathi_db import engine as engine_module
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
    # DB_ECHO makes SQLAlchemy add, once per process, a handler writing to the sys.stdout of the
    # moment (this test's capture); restore the handlers so later echo tests see their output.
    echo_logger = logging.getLogger("sqlalchemy.engine.Engine")
    monkeypatch.setattr(echo_logger, "handlers", [*echo_logger.handlers])
    for name, value in {
        "DB_POOL_SIZE": "3",
        "DB_MAX_OVERFLOW": "7",
        "DB_POOL_TIMEOUT": "2.5",
        "DB_POOL_RECYCLE": "120",
        "DB_ECHO": "true",
    }.items():
        monkeypatch.setenv(name, value)
    engine, pool = _pool_of_new_engine(monkeypatch)
    assert pool == {"size": 3, "max_overflow": 7, "timeout": 2.5, "recycle": 120}
    assert engine.echo is True


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, pool = _pool_of_new_engine(monkeypatch)
    assert pool == {"size": 10, "max_overflow": 20, "timeout": 30, "recycle": 3600}
    assert engine.echo is False


def _pool_of_new_engine(monkeypatch: pytest.MonkeyPatch) -> tuple[AsyncEngine, dict[str, Any]]:
    """A new engine from Settings(), and its pool's settings: size and timeout as the pool
    reports them, max_overflow and recycle (which it has no public accessor for) as they were
    passed to create_async_engine."""
    passed: dict[str, Any] = {}
    real = engine_module.create_async_engine

    def spy(url: Any, **kwargs: Any) -> AsyncEngine:
        passed.update(kwargs)
        return real(url, **kwargs)

    monkeypatch.setattr(engine_module, "create_async_engine", spy)
    engine = DatabaseConnection("postgresql://u@db.internal/app", settings=Settings()).engine
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return engine, {
        "size": pool.size(),
        "max_overflow": passed["max_overflow"],
        "timeout": pool.timeout(),
        "recycle": passed["pool_recycle"],
    }


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
        (f"postgresql://u:{CANARY}@PW@h:5432/app", "must be percent-encoded"),
        # several hosts: ports in one comma list, or fewer ports than hosts
        (f"postgresql://u:{CANARY}@/app?host=h1:5432,h2:5433", "hosts and ports cannot be read"),
        (f"postgresql://u:{CANARY}@/app?host=h1,h2&port=5432", "hosts and ports don't match"),
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


MISREAD_PASSWORDS = [
    "postgresql://postgres:S3cr3t@PWpiece@127.0.0.1:55432/db",  # the host would be PWpiece@…
    "postgresql://postgres:S3cr3t@PWpiece/x@127.0.0.1:55432/db",  # … or the database
    "postgresql://postgres:S3cr3t@PWpiece:9@127.0.0.1:55432/db",  # … or the port
    "postgresql://postgres:S3cr3t@PWpiece?x@127.0.0.1:55432/db",  # … or the query
    "postgresql://us@er:S3cr3t@PWpiece@127.0.0.1:55432/db",
]


@pytest.mark.parametrize("raw", MISREAD_PASSWORDS)
def test_an_unescaped_at_in_the_userinfo_is_refused_without_showing_it(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors = []
    with pytest.raises(ConfigurationError) as parsed:
        parse_database_url(raw)
    errors.append(parsed.value)
    for name in ("DATABASE_URL", "DATABASE_READ_URL"):
        with monkeypatch.context() as env:
            env.setenv(name, raw)
            with pytest.raises(ConfigurationError, match=f"^{name} has more than one") as loaded:
                Settings()  # refused when the settings load, not at first use
        errors.append(loaded.value)
    for error in errors:
        message = f"{error} {error!r} {error.__cause__!r} {error.__context__!r}"
        assert "must be percent-encoded ('@' as %40" in message
        assert 'urllib.parse.quote(password, safe="")' in message
        assert "S3cr3t" not in message and "PWpiece" not in message and "us@er" not in message


def test_a_percent_encoded_password_is_read_back_whole() -> None:
    password = "S3cr3t@PW:/?#%"
    raw = f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:55432/db"
    url, _ = parse_database_url(raw)
    assert (url.password, url.host, url.port, url.database) == (password, "127.0.0.1", 55432, "db")
    assert Settings(database_url=raw).database_url is not None  # type: ignore[arg-type]


def test_a_url_object_with_userinfo_in_its_host_is_refused() -> None:
    misread = URL.create("postgresql", "postgres", "S3cr3t", "PWpiece@127.0.0.1", 55432, "db")
    with pytest.raises(ConfigurationError, match="percent-encoded") as error:
        parse_database_url(misread)
    assert "PWpiece" not in str(error.value) and "S3cr3t" not in str(error.value)


async def test_sslmode_require_against_a_server_without_tls_is_a_configuration_error(
    database_url: URL,
) -> None:
    """Retrying cannot help: not a DatabaseUnavailableError, and it says what is wrong."""
    db = DatabaseConnection(database_url.update_query_dict({"sslmode": "require"}))
    try:
        with pytest.raises(ConfigurationError, match=r"does not support TLS \(SSL\)") as info:
            async with db.session_scope() as session:
                await session.execute(text("SELECT 1"))
    finally:
        await db.dispose()
    assert not info.value.retryable
    assert not isinstance(info.value, DatabaseUnavailableError)


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


def test_timeouts_behind_pgbouncer_are_refused_when_settings_load() -> None:
    from pydantic import ValidationError

    from exportsathi_db.config import Settings

    with pytest.raises(ValidationError, match="ALTER ROLE"):
        Settings(
            database_url="postgresql://u:p@127.0.0.1:6432/db",  # type: ignore[arg-type]
            db_pgbouncer=True,
            db_statement_timeout_ms=1000,
        )


def test_the_cli_names_a_setting_rule_broken_across_fields_in_one_line() -> None:
    import os
    import subprocess
    import sys

    env = os.environ | {
        "DATABASE_URL": "postgresql://u:p@127.0.0.1:6432/db",
        "DB_PGBOUNCER": "true",
        "DB_STATEMENT_TIMEOUT_MS": "1000",
    }
    done = subprocess.run(
        [sys.executable, "-m", "exportsathi_db", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "ALTER ROLE" in done.stderr, done.stderr
