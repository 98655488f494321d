"""Rotating credentials: a password provider asked for each new connection; a rotation under
load loses no unit of work; a failing provider is a typed error that never shows a secret."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import sys
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.config import Settings
from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    PasswordProviderError,
)
from tests.factories import unique
from tests.reliability.support import settings
from tests.servers import admin_connection

ROLE = "rotating_app"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def role_url(own_url: URL) -> AsyncIterator[URL]:
    """The migrated database as ROLE (LOGIN, a password set per test, a table to write), in a
    URL whose own password is wrong: only a provider can log in."""
    admin = await admin_connection(own_url)
    try:
        await admin.execute(
            f"""
            DROP ROLE IF EXISTS {ROLE};
            CREATE ROLE {ROLE} LOGIN PASSWORD '{secrets.token_urlsafe(16)}';
            CREATE TABLE IF NOT EXISTS rotation_probe (marker text PRIMARY KEY);
            GRANT SELECT, INSERT ON rotation_probe TO {ROLE};
            """
        )
    finally:
        await admin.close()
    yield own_url.set(username=ROLE, password="not-the-password")


async def _set_password(url: URL, password: str) -> None:
    admin = await admin_connection(url)
    try:
        await admin.execute(f"ALTER ROLE {ROLE} PASSWORD '{password}'")
    finally:
        await admin.close()


def _db(url: URL, password: object = None, **overrides: object) -> DatabaseConnection:
    return DatabaseConnection(url, settings=settings(**overrides), password=password)  # type: ignore[arg-type]


def _texts_of(error: BaseException) -> list[str]:
    """Everything an error can print: str, repr, notes, and the whole chained traceback."""
    texts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen), repr(seen.args), *getattr(seen, "__notes__", [])]
        seen = seen.__cause__ or seen.__context__
    return texts


async def _whoami(session: AsyncSession) -> str:
    return str((await session.execute(text("SELECT current_user"))).scalar_one())


async def test_rotation_under_load_loses_no_unit_of_work(
    own_url: URL, role_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """Units of work run through run() by 12 tasks for 6 s while the role's password is
    rotated every 0.7 s (ALTER ROLE first, then the provider hands out the new one: the
    window between is where a new connection's login fails). Connections are recycled
    every second and the pool grows and shrinks, so new connections open all along."""
    current = secrets.token_urlsafe(24)
    await _set_password(own_url, current)
    asked = 0

    async def provider() -> str:  # as an IAM-token fetch would be
        nonlocal asked
        asked += 1
        await asyncio.sleep(0.005)
        return current

    db = _db(
        role_url,
        provider,
        db_pool_size=3,
        db_max_overflow=6,
        db_pool_recycle=1,
        db_retry_backoff_base=0.02,
    )
    done, failed, rotations = 0, 0, 0
    stop = asyncio.Event()

    async def worker() -> None:
        nonlocal done, failed

        async def unit(session: AsyncSession) -> None:
            await session.execute(
                text("INSERT INTO rotation_probe VALUES (:m)"), {"m": unique("rot")}
            )

        while not stop.is_set():
            try:
                await db.run(unit)
                done += 1
            except Exception:
                failed += 1
            await asyncio.sleep(0.01)

    async def rotate() -> None:
        nonlocal current, rotations
        while not stop.is_set():
            await asyncio.sleep(0.7)
            new = secrets.token_urlsafe(24)
            await _set_password(own_url, new)
            await asyncio.sleep(0.05)  # the window: the server has it, the provider not yet
            current = new
            rotations += 1

    try:
        with caplog.at_level(logging.INFO, logger="exportsathi_db"):
            tasks = [asyncio.create_task(worker()) for _ in range(12)]
            rotator = asyncio.create_task(rotate())
            await asyncio.sleep(6)
            stop.set()
            await asyncio.gather(*tasks, rotator)
        retried = caplog.text.count("failed (PasswordProviderError); retry")
        print(
            f"\nrotation under load: {done} units, {failed} failed, {rotations} rotations, "
            f"provider asked {asked} times, {retried} retries after a refused login"
        )
        assert failed == 0
        assert done > 100 and rotations >= 6
        assert asked > rotations  # new connections opened all along
        async with db.session_scope() as session:
            assert await _whoami(session) == ROLE
        assert current not in caplog.text
    finally:
        stop.set()
        await db.dispose()


async def test_a_sync_provider_and_a_command(own_url: URL, role_url: URL, tmp_path: Path) -> None:
    password = secrets.token_urlsafe(24)
    await _set_password(own_url, password)

    db = _db(role_url, lambda: password)
    try:
        async with db.session_scope() as session:
            assert await _whoami(session) == ROLE
    finally:
        await db.dispose()

    script = tmp_path / "print-password"
    script.write_text(f"import sys\nprint({password!r})\nprint('second line ignored')\n")
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    db = _db(role_url, db_password_command=command)
    try:
        async with db.session_scope() as session:
            assert await _whoami(session) == ROLE
        assert password not in repr(db) and password not in repr(db.settings)
    finally:
        await db.dispose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _secret_free(error: BaseException, secret: str, caplog: pytest.LogCaptureFixture) -> None:
    for shown in [*_texts_of(error), caplog.text]:
        assert secret not in shown


async def _fails(db: DatabaseConnection) -> tuple[BaseException, float]:
    started = time.monotonic()
    try:
        async with db.session_scope() as session:
            await _whoami(session)
    except Exception as exc:
        return exc, time.monotonic() - started
    finally:
        await db.dispose()
    pytest.fail("the unit of work succeeded")


async def test_a_provider_that_raises(role_url: URL, caplog: pytest.LogCaptureFixture) -> None:
    secret = secrets.token_urlsafe(24)

    def provider() -> str:
        raise RuntimeError(f"the vault answered 500 for token {secret}")

    with caplog.at_level(logging.DEBUG):
        error, _ = await _fails(_db(role_url, provider))
    assert isinstance(error, PasswordProviderError)
    assert isinstance(error, DatabaseUnavailableError) and error.retryable
    assert "RuntimeError" in str(error) and "password provider" in str(error)
    _secret_free(error, secret, caplog)


async def test_a_command_that_exits_non_zero(
    role_url: URL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = secrets.token_urlsafe(24)
    script = tmp_path / "failing"
    script.write_text(f"import sys\nprint({secret!r})\nsys.exit(3)\n")
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} --token {secret}"
    with caplog.at_level(logging.DEBUG):
        error, _ = await _fails(_db(role_url, db_password_command=command))
    assert isinstance(error, PasswordProviderError) and error.retryable
    assert "exited with status 3" in str(error)
    _secret_free(error, secret, caplog)


async def test_a_command_that_hangs(
    role_url: URL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = secrets.token_urlsafe(24)
    pid_file = tmp_path / "pid"
    script = tmp_path / "hanging"
    script.write_text(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        f"time.sleep(60)\nprint({secret!r})\n"
    )
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    db = _db(role_url, db_password_command=command, db_password_timeout=0.5)
    with caplog.at_level(logging.DEBUG):
        error, took = await _fails(db)
    print(f"\na hanging password command: {type(error).__name__} after {took:.2f} s")
    assert isinstance(error, PasswordProviderError) and "DB_PASSWORD_TIMEOUT" in str(error)
    assert took < 2.0
    _secret_free(error, secret, caplog)
    assert not _alive(int(pid_file.read_text()))  # killed and reaped, not left running


async def test_a_provider_that_returns_nonsense_or_is_missing(role_url: URL) -> None:
    error, _ = await _fails(_db(role_url, lambda: 42))
    assert isinstance(error, ConfigurationError) and not error.retryable

    error, _ = await _fails(_db(role_url, lambda: ""))
    assert isinstance(error, PasswordProviderError)

    missing = "/nonexistent/bin/get-db-password --role app"
    error, _ = await _fails(_db(role_url, db_password_command=missing))
    assert isinstance(error, ConfigurationError) and not error.retryable
    assert "not found" in str(error) and "--role" not in str(error)


async def test_run_retries_a_provider_failure_but_not_a_configuration_error(
    own_url: URL, role_url: URL
) -> None:
    password = secrets.token_urlsafe(24)
    await _set_password(own_url, password)
    asked = 0

    def flaky() -> str:
        nonlocal asked
        asked += 1
        if asked == 1:
            raise ConnectionError("the token endpoint is briefly down")
        return password

    db = _db(role_url, flaky, db_retry_backoff_base=0.01)
    try:
        assert await db.run(_whoami) == ROLE
        assert asked == 2
    finally:
        await db.dispose()

    calls = 0

    async def unit(session: AsyncSession) -> str:
        nonlocal calls
        calls += 1
        return await _whoami(session)

    db = _db(role_url, db_password_command="/nonexistent/get-password")
    try:
        with pytest.raises(ConfigurationError):
            await db.run(unit)
        assert calls == 1
    finally:
        await db.dispose()


def test_password_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="DB_PASSWORD_COMMAND"):
        Settings(db_password_command="get-password 'unclosed")
    with pytest.raises(ConfigurationError, match="empty"):
        Settings(db_password_command="   ")
    db = _db(
        URL.create("postgresql", "u", None, "127.0.0.1", 5432, "d"),
        lambda: "x",
        db_password_timeout=5,
        db_connect_timeout=5,
    )
    with pytest.raises(ConfigurationError, match="DB_PASSWORD_TIMEOUT"):
        db.engine  # noqa: B018
