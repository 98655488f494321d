"""One local PostgreSQL server (a "cluster" in PostgreSQL's words): init, start, stop, status.

The shape follows asyncpg's `asyncpg/cluster.py`. Server programs run as the server user
(see `programs`); the server's own state is read from its files (postmaster.pid, PG_VERSION).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
from sqlalchemy.engine import URL

from exportsathi_db.servers.programs import (
    Binaries,
    EmbeddedServerError,
    last_lines,
    own_dir,
    prepare_binaries,
)

logger = logging.getLogger(__name__)

CONF_MARKER = "# --- exportsathi_db settings ---"
_INITDB_ARGS = ("-E", "UTF8", "--no-locale", "--no-instructions", "--auth-local=trust")
State = Literal["not-initialized", "stopped", "running"]


@dataclass(frozen=True)
class ClusterStatus:
    """A server's state as its files tell it (no program runs, nothing is created)."""

    state: State
    version: str | None  # the data directory's PostgreSQL major version; None before initdb
    pid: int | None
    data_dir: Path
    socket_dir: Path
    port: int
    log_file: Path

    @property
    def running(self) -> bool:
        return self.state == "running"


class Cluster:
    """A PostgreSQL server: its data directory, the binaries that run it, where it listens.

    `host` None means unix socket only (in `socket_dir`); else TCP on that address too.
    The port and socket directory are refreshed from postmaster.pid when it runs.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bin_dir: Path | None = None,
        user: str = "postgres",
        password: str | None = None,
        host: str | None = None,
        port: int = 5432,
        socket_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(os.path.abspath(data_dir))
        self.user, self.password, self.host, self.port = user, password, host, port
        self.socket_dir = socket_dir or self.data_dir
        self.log_file = self.data_dir / "server.log"
        self._requested_bin_dir = bin_dir

    def __repr__(self) -> str:  # never the password
        return f"{type(self).__name__}(data_dir={str(self.data_dir)!r}, port={self.port})"

    @functools.cached_property
    def binaries(self) -> Binaries:
        """The programs that run this server, found and checked on first use."""
        return prepare_binaries(self._requested_bin_dir)

    @property
    def bin_dir(self) -> Path:
        return self.binaries.bin_dir

    @property
    def version(self) -> str:
        """The binaries' PostgreSQL major version ("18")."""
        return self.binaries.major

    def url(self, database: str = "postgres", *, driver: str = "postgresql+asyncpg") -> URL:
        query = {} if self.host else {"host": str(self.socket_dir)}
        return URL.create(driver, self.user, self.password, self.host, self.port, database, query)

    async def connect(self, database: str = "postgres", **kwargs: Any) -> asyncpg.Connection:
        """A plain asyncpg connection to `database` (kwargs go to `asyncpg.connect`)."""
        params: dict[str, Any] = {"host": self.host or str(self.socket_dir), "port": self.port}
        params |= {"user": self.user, "password": self.password, "database": database}
        conn: asyncpg.Connection = await asyncpg.connect(**(params | kwargs))
        return conn

    def status(self) -> ClusterStatus:
        """Running or not, the data directory's version, where it listens and logs."""
        lines = self._pidfile()
        if lines is not None:
            self._listening_as(lines)
        version_file = self.data_dir / "PG_VERSION"
        version = version_file.read_text().strip() if version_file.exists() else None
        state: State = "running" if lines else "stopped" if version else "not-initialized"
        pid = int(lines[0]) if lines else None
        return ClusterStatus(
            state, version, pid, self.data_dir, self.socket_dir, self.port, self.log_file
        )

    def init(self, *initdb_args: str) -> None:
        """`initdb` (UTF8, no locale, trust on the unix socket) into an empty data directory."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            kind = "already" if (self.data_dir / "PG_VERSION").exists() else "not empty and not"
            raise EmbeddedServerError(f"{self.data_dir} is {kind} a PostgreSQL data dir")
        own_dir(self.data_dir, self.binaries.run_as)
        self.binaries.run("initdb", "-D", self.data_dir, *_INITDB_ARGS, *initdb_args)

    def configure(self, settings: Mapping[str, str | int]) -> None:
        """Append settings to postgresql.conf (the last occurrence wins; start or reload)."""
        lines = [f"{k} = '{str(v).replace(chr(39), chr(39) * 2)}'" for k, v in settings.items()]
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n".join(["", CONF_MARKER, *lines, ""]))

    def is_configured(self) -> bool:
        """True once `configure` has written to postgresql.conf."""
        return CONF_MARKER in (self.data_dir / "postgresql.conf").read_text()

    def start(self, timeout: float = 60) -> None:
        """Start the server unless it runs, and wait until it accepts connections."""
        if (lines := self._wait_ready(timeout)) is None:
            t0 = time.monotonic()
            wait = ["-w", "-t", str(int(timeout))]
            res = self.binaries.run(
                "pg_ctl", "-D", self.data_dir, "-l", self.log_file, *wait, "start", check=False
            )
            if res.returncode != 0:
                try:
                    tail = last_lines(self.log_file.read_text(errors="replace"), 20)
                except OSError:
                    tail = "(no server log)"
                raise EmbeddedServerError(
                    f"PostgreSQL in {self.data_dir} failed to start: "
                    f"{last_lines(res.stderr, 2)}\n--- {self.log_file} ---\n{tail}"
                )
            if (lines := self._wait_ready(timeout)) is None:
                raise EmbeddedServerError(f"PostgreSQL in {self.data_dir} stopped after starting")
            elapsed = time.monotonic() - t0
            logger.info("started PostgreSQL in %s (%.2fs)", self.data_dir, elapsed)
        self._listening_as(lines)

    def stop(self) -> None:
        """`pg_ctl stop -m fast`; does nothing when the server is not running."""
        if self._pidfile() is None:
            return
        cmd = ("-D", self.data_dir, "-m", "fast", "-w", "-t", "60", "stop")
        res = self.binaries.run("pg_ctl", *cmd, check=False)
        if res.returncode != 0 and self._pidfile() is not None:
            raise EmbeddedServerError(
                f"could not stop PostgreSQL in {self.data_dir}: {last_lines(res.stderr, 3)}"
            )
        logger.info("stopped PostgreSQL in %s", self.data_dir)

    def restart(self) -> None:
        """Stop (fast: sessions are ended) and start again; done when it accepts connections."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """Make the running server re-read its configuration files (`pg_ctl reload`)."""
        self.binaries.run("pg_ctl", "-D", self.data_dir, "reload")

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with psql as the server user; its unaligned, tuples-only output."""
        conn = [f"--host={self.host or self.socket_dir}", f"--port={self.port}"]
        conn += [f"--username={self.user}", f"--dbname={database}"]
        env = {"PGPASSWORD": self.password} if self.password else {}
        res = self.binaries.run("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", *conn, "-c", sql, env=env)
        return res.stdout.strip()

    def _listening_as(self, pidfile: list[str]) -> None:
        if len(pidfile) > 4:
            self.port = int(pidfile[3])
            self.socket_dir = Path(pidfile[4] or self.socket_dir)

    def _wait_ready(self, timeout: float) -> list[str] | None:
        """postmaster.pid lines once the running server is ready; None when none runs."""
        deadline = time.monotonic() + timeout
        while (lines := self._pidfile()) is not None:
            if len(lines) >= 8 and lines[7].strip() in ("ready", "standby"):
                return lines
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"PostgreSQL in {self.data_dir} did not become ready")
            time.sleep(0.05)
        return None

    def _pidfile(self) -> list[str] | None:
        """postmaster.pid lines if a live postmaster owns the data directory (a stale file of a
        reused pid is removed: postgres would refuse to start over it)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except PermissionError:
            pass  # alive, but another user's process
        except OSError:
            return None
        try:  # "pid (comm) state ...": a zombie is dead; another program means the pid was reused
            info = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None if Path("/proc/self").exists() else lines
        comm, state = info[info.find("(") + 1 : info.rfind(")")], info[info.rfind(")") + 2 :][:1]
        if comm in ("postgres", "postmaster") and state != "Z":
            return lines
        stale = [self.data_dir / "postmaster.pid"]
        if len(lines) > 4 and lines[4]:
            stale.append(Path(lines[4]) / f".s.PGSQL.{lines[3]}.lock")
        for path in stale:
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(path.read_text().splitlines()[0]) == pid:
                    path.unlink()
        return None
