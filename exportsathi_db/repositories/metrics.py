"""The `user_metrics` counters: the one module that changes them.

Counters count live rows: a report, a document or a completed certification adds one when
it appears and takes one off when it goes. Each change is one atomic statement (an upsert
that creates the user's row on first use, or a decrement clamped at zero).
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.models import new_id
from exportsathi_db.repositories import executor

COUNTERS = frozenset(
    {
        "reports_generated",
        "certifications_completed",
        "documents_generated",
        "exports_completed",
        "cost_savings",
        "timeline_reduction_days",
    }
)


@functools.lru_cache(maxsize=16)
def _add_sql(names: tuple[str, ...]) -> str:
    """$1 a new row id, $2 the user, $3… the deltas of `names`."""
    deltas = ", ".join(f"${n}" for n in range(3, len(names) + 3))
    added = ", ".join(f"{name} = m.{name} + EXCLUDED.{name}" for name in names)
    return (
        f"INSERT INTO user_metrics AS m (id, user_id, {', '.join(names)}) VALUES ($1, $2, {deltas})"
        f" ON CONFLICT (user_id) DO UPDATE SET {added}"
    )


@functools.lru_cache(maxsize=16)
def _subtract_sql(names: tuple[str, ...]) -> str:
    """$1 the user, $2… the deltas of `names`; never below zero, never creating the row."""
    clamped = ", ".join(
        f"{name} = greatest({name} - ${n}, 0)" for n, name in enumerate(names, start=2)
    )
    return f"UPDATE user_metrics SET {clamped} WHERE user_id = $1"


def _names(deltas: dict[str, Any]) -> tuple[str, ...]:
    unknown = set(deltas) - COUNTERS
    if unknown:
        raise ValueError(f"not a counter of user_metrics: {', '.join(sorted(unknown))}")
    return tuple(sorted(deltas))


async def add(session: AsyncSession, user_id: uuid.UUID, **deltas: Any) -> None:
    """Atomically add to a user's counters, creating their metrics row on first use."""
    names = _names(deltas)
    await executor.execute(
        session, _add_sql(names), new_id(), user_id, *(deltas[name] for name in names)
    )


async def subtract(session: AsyncSession, user_id: uuid.UUID, **deltas: Any) -> None:
    """Atomically subtract from a user's counters, clamped at zero.

    Rows made outside this package (raw SQL, factories) were never counted; clamping keeps
    the counters non-negative instead of failing the caller's transaction.
    """
    names = _names(deltas)
    await executor.execute(
        session, _subtract_sql(names), user_id, *(deltas[name] for name in names)
    )


# A CTE step counting one new report for the owner of the rows of CTE `new` (used by the
# report INSERT so the report and its count are one statement); $n is a new metrics row id.
def count_new_report_cte(id_param: str) -> str:
    return f"""counted AS (
        INSERT INTO user_metrics AS m (id, user_id, reports_generated)
        SELECT {id_param}::uuid, new.user_id, 1 FROM new
        ON CONFLICT (user_id) DO UPDATE SET reports_generated = m.reports_generated + 1
    )"""
