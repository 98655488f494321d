"""A steady write load through the package, and what it saw around a failover.

Each of `tasks` concurrent tasks loops units of work that insert one row with a fresh,
client-generated id, and records for every unit when it started and returned, which server
port acknowledged it (`inet_server_port()`, so acknowledgements are attributed to a node),
or the exception it raised. A failed unit is followed by a short pause, as a client's backoff.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import (
    CommitOutcomeUnknownError,
    DatabaseUnavailableError,
    ExportSathiDBError,
)

# One statement: insert the row, and say which server did it and whether it was new.
INSERT = text(
    "WITH ins AS (INSERT INTO ha_writes (id, task) VALUES (:id, :task) RETURNING 1) "
    "SELECT inet_server_port(), (SELECT count(*) FROM ins)"
)
INSERT_IDEMPOTENT = text(
    "WITH ins AS (INSERT INTO ha_writes (id, task) VALUES (:id, :task) "
    "ON CONFLICT (id) DO NOTHING RETURNING 1) "
    "SELECT inet_server_port(), (SELECT count(*) FROM ins)"
)
BACKOFF_SECONDS = 0.05
ALLOWED = (DatabaseUnavailableError, CommitOutcomeUnknownError)


@dataclass(frozen=True)
class Unit:
    """One unit of work as the client saw it."""

    id: uuid.UUID
    started: float
    ended: float
    port: int | None = None  # the server that acknowledged it
    inserted: bool = True  # False: an idempotent retry found its row already committed
    attempts: int = 1  # how often the unit's function ran (db.run retries it)
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# A unit of work: (acknowledging port, whether the row was new, attempts).
Writer = Callable[[DatabaseConnection, uuid.UUID, int], Awaitable[tuple[int, bool, int]]]


async def write_in_scope(
    db: DatabaseConnection, uid: uuid.UUID, task: int
) -> tuple[int, bool, int]:
    """One plain unit of work (`session_scope`)."""
    async with db.session_scope() as session:
        port, inserted = (await session.execute(INSERT, {"id": uid, "task": task})).one()
    return port, bool(inserted), 1


def write_with_run(retries: int) -> Writer:
    """One unit through `db.run(...)`: idempotent by the client's id (`ON CONFLICT (id) DO
    NOTHING`), so `idempotent=True` is safe and an in-doubt commit is retried too."""

    async def write(db: DatabaseConnection, uid: uuid.UUID, task: int) -> tuple[int, bool, int]:
        attempts = 0

        async def insert(session: AsyncSession) -> tuple[int, bool]:
            nonlocal attempts
            attempts += 1
            row = (await session.execute(INSERT_IDEMPOTENT, {"id": uid, "task": task})).one()
            return row[0], bool(row[1])

        port, inserted = await db.run(insert, retries=retries, idempotent=True)
        return port, inserted, attempts

    return write


@dataclass
class WriteLoad:
    """`tasks` tasks writing through `db` until stopped; `units` is everything they saw."""

    db: DatabaseConnection
    tasks: int = 20
    writer: Writer = write_in_scope
    units: list[Unit] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _acked: asyncio.Condition = field(default_factory=asyncio.Condition)
    _running: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> WriteLoad:
        self._running = [asyncio.create_task(self._loop(i)) for i in range(self.tasks)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._running)

    async def wait_ack(self, accept: Callable[[Unit], bool], timeout: float) -> Unit:
        """The first acknowledged unit (from now on) that `accept` takes; TimeoutError."""
        seen = len(self.units)
        async with asyncio.timeout(timeout), self._acked:
            while True:
                for unit in self.units[seen:]:
                    if unit.ok and accept(unit):
                        return unit
                seen = len(self.units)
                await self._acked.wait()

    async def _loop(self, task: int) -> None:
        while not self._stop.is_set():
            uid = uuid.uuid4()
            started = time.monotonic()
            try:
                port, inserted, attempts = await self.writer(self.db, uid, task)
            except Exception as exc:  # every failure is recorded and judged by the test
                self.units.append(Unit(uid, started, time.monotonic(), error=exc))
                await asyncio.sleep(BACKOFF_SECONDS)
                continue
            self.units.append(Unit(uid, started, time.monotonic(), port, inserted, attempts))
            async with self._acked:
                self._acked.notify_all()


@dataclass
class Figures:
    """What one scenario measured, relative to the moment of the kill or switchover."""

    name: str
    event_at: float
    old_port: int
    new_port: int
    units: list[Unit]
    on_new_leader: set[uuid.UUID]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def acked(self) -> list[Unit]:
        return [u for u in self.units if u.ok]

    @property
    def failed(self) -> list[Unit]:
        return [u for u in self.units if not u.ok]

    @property
    def first_new_ack(self) -> float:
        """When the first write acknowledged by the new leader returned."""
        return min(u.ended for u in self.acked if u.port == self.new_port)

    @property
    def recovery_seconds(self) -> float:
        """From the kill / switchover until writes succeed again (on the new leader)."""
        return self.first_new_ack - self.event_at

    @property
    def write_gap_seconds(self) -> float:
        """The longest spell without any acknowledged write around the event."""
        ends = sorted(u.ended for u in self.acked)
        gaps = [b - a for a, b in itertools.pairwise(ends)]
        return max(gaps, default=0.0)

    @property
    def failures_by_type(self) -> Counter[str]:
        return Counter(type(u.error).__name__ for u in self.failed)

    @property
    def unexpected_failures(self) -> list[Unit]:
        """Failures that are not the package's retryable or in-doubt errors."""
        return [u for u in self.failed if not isinstance(u.error, ALLOWED)]

    @property
    def untyped_failures(self) -> list[Unit]:
        return [u for u in self.failed if not isinstance(u.error, ExportSathiDBError)]

    @property
    def lost(self) -> list[Unit]:
        """Acknowledged units whose row is not on the new leader."""
        return [u for u in self.acked if u.id not in self.on_new_leader]

    @property
    def failed_after_recovery(self) -> list[Unit]:
        """Units that started once the new leader had acknowledged a write, and failed."""
        return [u for u in self.failed if u.started >= self.first_new_ack]

    @property
    def failed_before_event(self) -> list[Unit]:
        return [u for u in self.failed if u.ended < self.event_at]

    @property
    def in_doubt(self) -> list[Unit]:
        return [u for u in self.failed if isinstance(u.error, CommitOutcomeUnknownError)]

    def summary(self) -> str:
        after = [u for u in self.acked if u.port == self.new_port]
        landed = sum(u.id in self.on_new_leader for u in self.in_doubt)
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failures_by_type.items()))
        extra = "".join(f"; {k} {v}" for k, v in self.extra.items())
        retried = [u for u in self.acked if u.attempts > 1]
        if retried:
            found = sum(not u.inserted for u in retried)
            extra += (
                f"; units retried {len(retried)} (most attempts "
                f"{max(u.attempts for u in retried)}, more than 4 (db.run's default "
                f"retries=3 would have failed them) {sum(u.attempts > 4 for u in retried)}; "
                f"a retry found its row already committed {found})"
            )
        return (
            f"{self.name}: writes back after {self.recovery_seconds:.2f} s "
            f"(longest gap between acknowledged writes {self.write_gap_seconds:.2f} s); "
            f"units {len(self.units)}, acknowledged {len(self.acked)} "
            f"({len(after)} by the new leader); failed {len(self.failed)}"
            f"{' (' + failed + ')' if failed else ''}; in doubt that landed "
            f"{landed}/{len(self.in_doubt)}; acknowledged lost {len(self.lost)}; "
            f"failed after recovery {len(self.failed_after_recovery)}{extra}"
        )

    def describe(self, units: list[Unit], limit: int = 5) -> str:
        return "; ".join(
            f"+{u.started - self.event_at:.2f}s..+{u.ended - self.event_at:.2f}s "
            f"{type(u.error).__name__}: {u.error}"
            for u in units[:limit]
        )
