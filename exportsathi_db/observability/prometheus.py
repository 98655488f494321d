"""Pool metrics for Prometheus (extra `prometheus`): a collector that reads
`DatabaseConnection.pool_status()` at each scrape, labelled by pool (`primary`, `replica`).

    from exportsathi_db import db_connection
    from exportsathi_db.observability.prometheus import register_pool_metrics

    register_pool_metrics(db_connection)  # then expose prometheus_client's REGISTRY as usual
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exportsathi_db.database import DatabaseConnection

PREFIX = "exportsathi_db_pool"
GAUGES = {
    "size": "Connections the pool keeps (DB_POOL_SIZE)",
    "checked_out": "Connections in use by a unit of work",
    "idle": "Pooled connections ready for use",
    "overflow": "Connections open beyond the pool's size (negative: fewer than size are open)",
    "max_overflow": "Connections allowed beyond the pool's size (DB_MAX_OVERFLOW)",
}
COUNTERS = {
    "waits": "Checkouts that found the pool exhausted and waited",
    "wait_seconds": "Seconds checkouts spent waiting for a connection",
    "timeouts": "Checkouts that gave up after DB_POOL_TIMEOUT",
}


class PoolCollector(Collector):
    """The pools of one DatabaseConnection (only the engines it has built so far)."""

    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    def collect(self) -> Iterable[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for name, doc in GAUGES.items():
            families[name] = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["pool"])
        for name, doc in COUNTERS.items():
            families[name] = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["pool"])
        for pool, status in self.db.pool_status().items():
            for name, family in families.items():
                family.add_metric([pool], getattr(status, name))
        yield from families.values()


def register_pool_metrics(
    db: DatabaseConnection, registry: CollectorRegistry = REGISTRY
) -> PoolCollector:
    """Register a PoolCollector of `db` with `registry` (default: prometheus_client's global
    one); returns it (`registry.unregister(collector)` removes it)."""
    collector = PoolCollector(db)
    registry.register(collector)
    return collector
