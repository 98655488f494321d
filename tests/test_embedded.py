"""The embedded default database (exportsathi_db.embedded) on a real local server (no mocks):
created on first use, reused, persistent, and what the command line needs (status, stop,
reset)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from exportsathi_db.embedded import EmbeddedCluster, ensure_default_server
from exportsathi_db.servers import EmbeddedServerError, find_bin_dir
from tests.test_servers import PG15_BIN, major_of, needs_pg15, run


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A fresh directory the unprivileged server user can traverse (mkdtemp makes it 0700)."""
    path = Path(tempfile.mkdtemp(prefix="exportsathi-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _read(cluster: EmbeddedCluster) -> str:
    conn = await cluster.connect("exportsathi")
    try:
        return str(await conn.fetchval("SELECT v FROM kept"))
    finally:
        await conn.close()


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
        assert second.url("exportsathi") == first.url("exportsathi")
        assert (data_dir / "postmaster.pid").read_text().split()[0] == pid

        async def write() -> None:
            engine = create_async_engine(first.url("exportsathi"))
            try:
                async with engine.begin() as conn:
                    await conn.execute(text("CREATE TABLE kept (v text)"))
                    await conn.execute(text("INSERT INTO kept VALUES ('still here')"))
            finally:
                await engine.dispose()

        run(write())
        first.stop()
        assert not (data_dir / "postmaster.pid").exists()
        first.stop()  # idempotent
        third = ensure_default_server(data_dir)
        assert third.url("exportsathi") == first.url("exportsathi")
        assert (data_dir / "postmaster.pid").read_text().split()[0] != pid
        assert run(_read(third)) == "still here"

        third.stop()  # a start failure reports the end of the server log
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\nshared_buffers = 'lots'\n")
        with pytest.raises(EmbeddedServerError, match=r"failed to start(.|\n)*\"lots\""):
            ensure_default_server(data_dir)
    finally:
        first.stop()


def test_status_stop_and_reset_for_the_command_line(base_dir: Path) -> None:
    data_dir = base_dir / "pgdata"
    cluster = EmbeddedCluster(data_dir)
    status = cluster.status()  # runs nothing, creates nothing
    assert (status.state, status.version, status.pid) == ("not-initialized", None, None)
    assert (status.data_dir, status.socket_dir) == (data_dir, base_dir / "run")
    assert status.log_file == data_dir / "server.log" and status.port == 5432
    assert list(base_dir.iterdir()) == []
    cluster.reset()  # nothing there yet: nothing to do

    cluster.ensure()
    try:
        status = cluster.status()
        assert status.running and status.version == major_of(cluster.bin_dir)
        assert status.pid == int((data_dir / "postmaster.pid").read_text().split()[0])
        assert status.log_file.exists()
        cluster.psql("CREATE TABLE kept AS SELECT 'old data' AS v", "exportsathi")

        cluster.stop()
        assert EmbeddedCluster(data_dir).status().state == "stopped"

        cluster.ensure()
        cluster.reset()  # stops it and deletes the data
        assert cluster.status().state == "not-initialized" and not data_dir.exists()
        cluster.ensure()  # a fresh, empty one
        with pytest.raises(EmbeddedServerError, match='"kept" does not exist'):
            cluster.psql("SELECT v FROM kept", "exportsathi")
    finally:
        cluster.stop()


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


def _cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["EXPORTSATHI_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-m", "exportsathi_db", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


def test_cli_status_stop_and_reset_of_the_embedded_server(base_dir: Path) -> None:
    data_dir = base_dir / "pgdata"
    code, out, _ = _cli(data_dir, "status")
    assert code == 3 and "not-initialized" in out and str(data_dir) in out
    assert f"log:    {data_dir / 'server.log'}" in out

    assert _cli(data_dir, "init")[0] == 0  # creates and starts it
    try:
        code, out, _ = _cli(data_dir, "status")
        assert code == 0 and "running (PostgreSQL" in out and str(base_dir / "run") in out

        code, out, _ = _cli(data_dir, "stop")
        assert code == 0 and "stopped" in out
        assert EmbeddedCluster(data_dir).status().state == "stopped"
        assert "not running" in _cli(data_dir, "stop")[1]

        code, _, err = _cli(data_dir, "reset")  # no --yes: nothing deleted
        assert code == 2 and "--yes" in err and data_dir.exists()
        code, out, _ = _cli(data_dir, "reset", "--yes")
        assert code == 0 and not data_dir.exists()
        assert _cli(data_dir, "status")[0] == 3
    finally:
        EmbeddedCluster(data_dir).stop()
