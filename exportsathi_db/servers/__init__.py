"""Local PostgreSQL servers, one class hierarchy (after asyncpg's `asyncpg/cluster.py`):

- `Cluster`: a server on a data directory (init, start, stop, restart, reload, status, url);
- `TemporaryCluster`: a throwaway one for tests and benchmarks, deleted at the end;
- `HotStandby`: a streaming replica of a running primary;
- the embedded default database (`exportsathi_db.embedded.EmbeddedCluster`) is a `Cluster`.

`programs` finds the binaries and runs them (as the unprivileged server user when root).
"""

from exportsathi_db.servers.cluster import Cluster, ClusterStatus
from exportsathi_db.servers.programs import (
    SERVER_OS_USER,
    SHARED_ROOT,
    Binaries,
    EmbeddedServerError,
    find_bin_dir,
    free_port,
)
from exportsathi_db.servers.temporary import HotStandby, TemporaryCluster

__all__ = [
    "SERVER_OS_USER",
    "SHARED_ROOT",
    "Binaries",
    "Cluster",
    "ClusterStatus",
    "EmbeddedServerError",
    "HotStandby",
    "TemporaryCluster",
    "find_bin_dir",
    "free_port",
]
