"""Acknowledged writes are never lost: 3 rounds x 500 units of work, 25 at a time, half of
them cancelled at chosen points of their life (before they start, while BEGIN is in flight,
mid-statement, while COMMIT is in flight, at a random moment, twice as Starlette does),
mixing repository writes and plain ORM writes.

After each round: every unit that returned normally is in the database; no unit cancelled
before its COMMIT was sent left a row; nothing is checked out of the pool and no connection
of the app is idle in a transaction. A unit cancelled while COMMIT was in flight may or may
not have committed (no client can know); it must not return normally.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event, text
from sqlalchemy.engine import URL

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.models import User
from exportsathi_db.repositories import UserRepository
from tests.factories import PASSWORD_HASH
from tests.reliability.support import app_backends, connect
from tests.servers import admin_connection

ROUNDS, UNITS, AT_ONCE = 3, 500, 25
POINTS = ("before", "begin", "statement", "commit", "random", "twice")


@dataclass
class Unit:
    email: str
    repository: bool  # a repository write, else a plain ORM write
    cancel_at: str | None  # one of POINTS, None: not cancelled
    commit_sent: bool = False
    outcome: str = "pending"  # "returned", or the exception's class name


_current: ContextVar[Unit | None] = ContextVar("unit", default=None)


def _cancel_me() -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()


@pytest_asyncio.fixture(loop_scope="session")
async def db(own_url: URL) -> AsyncIterator[DatabaseConnection]:
    connection = connect(own_url, db_pool_size=20, db_max_overflow=5)
    engine = connection.engine.sync_engine

    def before_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        unit = _current.get()
        # The unit's first statement through SQLAlchemy: its BEGIN is sent right after this.
        if unit is not None and unit.cancel_at == "begin" and "INSERT" in statement:
            _cancel_me()

    def on_commit(_conn: Any) -> None:
        unit = _current.get()
        if unit is not None:
            unit.commit_sent = True
            if unit.cancel_at == "commit":  # delivered while the COMMIT awaits its answer
                _cancel_me()

    event.listen(engine, "before_cursor_execute", before_statement)
    event.listen(engine, "commit", on_commit)
    yield connection
    await connection.dispose()


async def _work(db: DatabaseConnection, unit: Unit) -> None:
    _current.set(unit)
    async with db.session_scope() as session:
        if unit.repository:
            await UserRepository(session).create(
                email=unit.email,
                password_hash=PASSWORD_HASH,
                business_type="Manufacturing",
                company_size="Small",
            )
        else:
            session.add(
                User(
                    email=unit.email,
                    password_hash=PASSWORD_HASH,
                    business_type="Merchant",
                    company_size="Micro",
                )
            )
            await session.flush()
        if unit.cancel_at in ("statement", "twice"):
            await session.execute(text("SELECT pg_sleep(0.2)"))


async def _run(db: DatabaseConnection, unit: Unit, gate: asyncio.Semaphore) -> None:
    async with gate:
        task = asyncio.ensure_future(_work(db, unit))
        if unit.cancel_at == "before":
            task.cancel()
        elif unit.cancel_at == "statement":
            asyncio.get_running_loop().call_later(0.05, task.cancel)
        elif unit.cancel_at == "random":
            asyncio.get_running_loop().call_later(random.uniform(0, 0.004), task.cancel)
        elif unit.cancel_at == "twice":  # once mid-statement, again during the cleanup
            asyncio.get_running_loop().call_later(0.05, task.cancel)
            asyncio.get_running_loop().call_later(0.051, task.cancel)
        try:
            await task
            unit.outcome = "returned"
        except BaseException as exc:  # every outcome is recorded and checked
            unit.outcome = type(exc).__name__


async def _stored(url: URL, emails: list[str]) -> set[str]:
    conn = await admin_connection(url)
    try:
        rows = await conn.fetch("SELECT email FROM users WHERE email = ANY($1::text[])", emails)
    finally:
        await conn.close()
    return {row["email"] for row in rows}


@pytest.mark.timeout(600)
async def test_acknowledged_units_are_never_lost(db: DatabaseConnection, own_url: URL) -> None:
    app = db.settings.db_application_name
    totals = {"returned": 0, "lost": 0, "cancelled": 0, "unknown": 0, "in_transaction": 0}
    points_hit: set[str] = set()
    for round_ in range(ROUNDS):
        random.seed(round_)
        units = [
            Unit(
                email=f"durable-{round_}-{i}@example.in",
                repository=i % 2 == 0,
                cancel_at=random.choice(POINTS) if i % 4 >= 2 else None,
            )
            for i in range(UNITS)
        ]
        gate = asyncio.Semaphore(AT_ONCE)
        await asyncio.gather(*(_run(db, unit, gate) for unit in units))

        stored = await _stored(own_url, [u.email for u in units])
        returned = [u for u in units if u.outcome == "returned"]
        cancelled = [u for u in units if u.outcome in ("CancelledError", "TimeoutError")]
        unexpected = {u.outcome for u in units} - {"returned", "CancelledError", "TimeoutError"}
        assert not unexpected, unexpected
        lost = [u.email for u in returned if u.email not in stored]
        before_commit = [u for u in cancelled if not u.commit_sent]
        leaked = [u.email for u in before_commit if u.email in stored]
        assert lost == [], f"round {round_}: {len(lost)} acknowledged units lost"
        assert leaked == [], f"round {round_}: rows of units cancelled before COMMIT: {leaked}"
        assert all(u.cancel_at in (None, "random") for u in returned) or all(
            u.cancel_at != "commit" for u in returned
        ), "a unit cancelled during COMMIT returned normally"

        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        states = [b["state"] for b in await app_backends(own_url, app)]
        in_transaction = [s for s in states if s and s.startswith("idle in transaction")]
        assert in_transaction == [], states

        totals["returned"] += len(returned)
        totals["lost"] += len(lost)
        totals["cancelled"] += len(before_commit)
        totals["unknown"] += len(cancelled) - len(before_commit)
        totals["in_transaction"] += len(in_transaction)
        points_hit |= {u.cancel_at for u in cancelled if u.cancel_at}
    assert points_hit == set(POINTS), points_hit  # every cancellation point was exercised
    print(f"\ndurability: {ROUNDS} rounds x {UNITS} units: {totals}")
