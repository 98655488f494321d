"""Throwaway servers: a `TemporaryCluster` for tests and benchmarks, and a `HotStandby` (a
streaming replica) of a running primary. Both listen on 127.0.0.1 only, with password auth.

    with TemporaryCluster() as cluster:  # initdb + start; stopped and deleted on exit
        url = cluster.url()
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from exportsathi_db.servers.cluster import Cluster
from exportsathi_db.servers.programs import EmbeddedServerError, free_port, own_dir

LOOPBACK = "127.0.0.1"
# Speed over durability (a throwaway server), and enough WAL senders for a replica.
TEMPORARY_SETTINGS: dict[str, str | int] = {
    **{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
    **{"max_connections": 200, "wal_level": "replica", "max_wal_senders": 5},
}


class TemporaryCluster(Cluster):
    """A server in a fresh temporary directory (also its socket directory) on a free port,
    superuser `postgres` with `password` (random by default); `destroy()` deletes it."""

    def __init__(
        self, *, bin_dir: Path | None = None, password: str | None = None, user: str = "postgres"
    ) -> None:
        data_dir = Path(tempfile.mkdtemp(prefix="exportsathi-pg-"))
        password = secrets.token_urlsafe(16) if password is None else password
        super().__init__(
            data_dir, bin_dir=bin_dir, user=user, password=password, host=LOOPBACK, port=0
        )

    def __enter__(self) -> Self:
        try:
            self.init()
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    def init(self, *initdb_args: str) -> None:
        """initdb with the password (scram-sha-256 over TCP), then the throwaway settings."""
        run_as = self.binaries.run_as
        fd, pwfile = tempfile.mkstemp(prefix="exportsathi-pw-")  # mode 0600
        try:
            if run_as:
                os.fchown(fd, *run_as)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{self.password}\n")
            auth = [f"--username={self.user}", f"--pwfile={pwfile}", "--auth-host=scram-sha-256"]
            super().init(*auth, "--no-sync", *initdb_args)
        finally:
            os.unlink(pwfile)
        listen = {"listen_addresses": LOOPBACK, "unix_socket_directories": str(self.data_dir)}
        self.configure(listen | TEMPORARY_SETTINGS)

    def start(self, timeout: float = 60) -> None:
        """Start on a free port the first time; on the same port after that (its URLs hold)."""
        for attempt in (1, 2, 3):
            if not self.port:
                self.configure({"port": free_port()})  # super().start() reads it back
            try:
                super().start(timeout)
                return
            except EmbeddedServerError as exc:  # the port was taken between probing and binding
                if self.port or attempt == 3 or "already in use" not in str(exc):
                    raise


class HotStandby(TemporaryCluster):
    """A streaming replica of a running TCP `primary` (`pg_basebackup -R`): same binaries,
    user and password, its own port; read-only queries only."""

    def __init__(self, primary: Cluster) -> None:
        super().__init__(bin_dir=primary.bin_dir, password=primary.password, user=primary.user)
        self.primary = primary

    def init(self, *basebackup_args: str) -> None:
        """Copy the primary with `pg_basebackup`; `-R` makes this server its standby."""
        own_dir(self.data_dir, self.binaries.run_as)
        source = ["-h", self.primary.host or self.primary.socket_dir, "-p", self.primary.port]
        self.binaries.run(
            "pg_basebackup", "-R", "-D", self.data_dir, "-X", "stream", "-c", "fast",
            *source, "-U", self.user, *basebackup_args,
            env={"PGPASSWORD": self.password or ""},
        )  # fmt: skip
        self.configure({"unix_socket_directories": str(self.data_dir)})
