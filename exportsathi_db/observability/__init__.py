"""What operators see of the data layer, all off by default except the pool counters:

- `pool_status()` / `DatabaseConnection.pool_status()`: size, checked out, idle, overflow,
  waits and time waited (`observability.pool`);
- the slow-statement log, with DB_SLOW_STATEMENT_MS (`observability.slow_statements`);
- OpenTelemetry spans: `observability.tracing.instrument()` (extra `otel`);
- a Prometheus collector: `observability.prometheus.register_pool_metrics()` (extra
  `prometheus`).

The two extras' modules are imported only by whoever uses them.
"""

from exportsathi_db.observability.pool import PoolStatus, pool_status

__all__ = ["PoolStatus", "pool_status"]
