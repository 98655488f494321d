"""Pool metrics: how full each engine's pool is and how long units of work waited for it.

`pool_status(engine)` reads SQLAlchemy's public pool counters (size, checked in, checked
out, overflow) and the waits counted by `MeasuredPool`, the pool class of every engine this
package builds: a checkout that finds no idle connection and no room to open one waits, and
that wait (count, seconds, timeouts) is what SQLAlchemy does not report. A checkout that
does not wait costs two counter reads more than SQLAlchemy's own pool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolProxiedConnection


class MeasuredPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, counting the checkouts that had to wait. The counts
    start at zero when the pool is made (the engine's `dispose()` makes a new one)."""

    def __init__(self, creator: Any, *, max_overflow: int = 10, **kwargs: Any) -> None:
        super().__init__(creator, max_overflow=max_overflow, **kwargs)
        self.max_overflow = max_overflow
        self.waits = 0
        self.wait_seconds = 0.0
        self.timeouts = 0

    def connect(self) -> PoolProxiedConnection:
        if self.checkedin() > 0 or self.max_overflow < 0 or self.overflow() < self.max_overflow:
            return super().connect()  # an idle connection, or room to open one: no wait
        started = time.perf_counter()
        try:
            return super().connect()
        except PoolTimeout:
            self.timeouts += 1
            raise
        finally:
            self.waits += 1
            self.wait_seconds += time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """One pool, now. `size`: connections it keeps (DB_POOL_SIZE); `checked_out`: in use by a
    unit of work; `idle`: pooled, ready; `overflow`: open beyond `size` (negative while fewer
    than `size` are open); `max_overflow`: DB_MAX_OVERFLOW. Since the pool was made: `waits`,
    checkouts that found it exhausted and waited; `wait_seconds`, their total wait;
    `timeouts`, waits that ended after DB_POOL_TIMEOUT with PoolTimeoutError."""

    size: int
    checked_out: int
    idle: int
    overflow: int
    max_overflow: int
    waits: int
    wait_seconds: float
    timeouts: int


def pool_status(engine: AsyncEngine) -> PoolStatus:
    """`engine`'s pool, now; `engine` is one this package built (`DatabaseConnection.engine`).
    Plain counter reads: safe to call from another thread (e.g. a metrics exporter's)."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, MeasuredPool):
        raise TypeError(f"pool_status needs a MeasuredPool; this engine has {type(pool).__name__}")
    return PoolStatus(
        size=pool.size(),
        checked_out=pool.checkedout(),
        idle=pool.checkedin(),
        overflow=pool.overflow(),
        max_overflow=pool.max_overflow,
        waits=pool.waits,
        wait_seconds=pool.wait_seconds,
        timeouts=pool.timeouts,
    )
