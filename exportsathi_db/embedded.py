"""The embedded default database: used when DATABASE_URL is not set (development only).

A `Cluster` configured for one machine: a persistent data directory (EXPORTSATHI_DATA_DIR,
else /var/lib/exportsathi_db/pgdata as root, else ~/.local/share/exportsathi_db/pgdata), a
unix socket only (in `run/` beside the data directory, port 5432 in its name), trust auth for
the local superuser `exportsathi`, database `exportsathi`. It is started on first use and left
running; as root it runs as the unprivileged `exportsathi-pg` user.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from exportsathi_db.servers import SHARED_ROOT, Cluster, EmbeddedServerError
from exportsathi_db.servers.programs import file_lock, make_dirs, own_dir

logger = logging.getLogger(__name__)

DEFAULT_SUPERUSER = "exportsathi"
DEFAULT_PORT = 5432
_LOG_ROTATE_BYTES = 10_000_000

__all__ = ["EmbeddedCluster", "EmbeddedServerError", "default_data_dir", "ensure_default_server"]


def default_data_dir() -> Path:
    if env := os.environ.get("EXPORTSATHI_DATA_DIR"):
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return SHARED_ROOT / "pgdata"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "exportsathi_db" / "pgdata"


def ensure_default_server(data_dir: Path | None = None) -> EmbeddedCluster:
    """The embedded default, running (created on first use), with its database."""
    return EmbeddedCluster(data_dir).ensure()


class EmbeddedCluster(Cluster):
    """The embedded default server on `data_dir` (default: `default_data_dir()`).

    For the command line: `ensure()` starts it, `stop()` stops it, `status()` reports it
    (running or not, version, data directory, socket directory, log file), `reset()` deletes
    its data. Constructing one runs nothing.
    """

    def __init__(self, data_dir: Path | None = None, *, bin_dir: Path | None = None) -> None:
        data_dir = Path(os.path.abspath(data_dir or default_data_dir()))
        self.run_dir = data_dir.parent / "run"
        super().__init__(
            data_dir,
            bin_dir=bin_dir,
            user=DEFAULT_SUPERUSER,
            port=DEFAULT_PORT,
            socket_dir=self.run_dir,
        )

    def ensure(self) -> Self:
        """Start the server, creating its data directory and database on first use."""
        make_dirs(self.data_dir.parent)
        with self._lock():
            found = self.status().version
            if found is None:
                what = "creating the embedded PostgreSQL %s database in %s"
                logger.info(what, self.version, self.data_dir)
                self.init(f"--username={DEFAULT_SUPERUSER}", "--auth-host=reject")
            elif found != self.version:
                raise EmbeddedServerError(
                    f"data directory {self.data_dir} is for PostgreSQL {found} but the binaries "
                    f"in {self.bin_dir} are PostgreSQL {self.version}; set EXPORTSATHI_PG_BIN "
                    f"to PostgreSQL {found} binaries or use another EXPORTSATHI_DATA_DIR"
                )
            if not self.status().running:
                self._prepare_start()
            self.start()
            if self.psql("SELECT 1 FROM pg_database WHERE datname = 'exportsathi'") != "1":
                self.psql("CREATE DATABASE exportsathi")
        return self

    def reset(self) -> None:
        """Stop the server and delete its data directory, all data with it (and its log);
        the next `ensure()` creates a fresh one."""
        if not self.data_dir.parent.is_dir():
            return
        with self._lock():
            self.destroy()
        logger.info("deleted the embedded PostgreSQL data directory %s", self.data_dir)

    def _prepare_start(self) -> None:
        """Its socket directory, its settings (once: later edits win) and a rotated log."""
        if not self.run_dir.exists():
            own_dir(self.run_dir, self.binaries.run_as)
        if not self.is_configured():
            socket_only = {"listen_addresses": "", "unix_socket_directories": str(self.run_dir)}
            self.configure(socket_only | {"port": DEFAULT_PORT})
        if self.log_file.exists() and self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
            self.log_file.replace(self.log_file.with_name("server.log.1"))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One process at a time creates, starts or deletes this data directory."""
        with file_lock(self.data_dir.parent / f".{self.data_dir.name}.lock"):
            yield
