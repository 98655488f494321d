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
    return add_cte("counted", "reports_generated", rows="new", id_param=id_param)


# --- Counter steps inside other statements: a row and its count change in one statement ---


def add_cte(name: str, counter: str, *, rows: str, id_param: str, where: str = "true") -> str:
    """A CTE step `name` adding to `counter` the number of rows of CTE `rows` matching
    `where`, for their owner (`user_id`), creating the metrics row on first use.

    `id_param` is the `$n` of a new metrics row id, so `rows` must belong to one user.
    """
    _names({counter: 1})
    return f"""{name} AS (
        INSERT INTO user_metrics AS m (id, user_id, {counter})
        SELECT {id_param}::uuid, user_id, count(*) FROM {rows} WHERE {where} GROUP BY user_id
        ON CONFLICT (user_id) DO UPDATE SET {counter} = m.{counter} + EXCLUDED.{counter}
    )"""


def subtract_cte(name: str, counter: str, *, rows: str, where: str = "true") -> str:
    """A CTE step `name` taking off `counter` the number of rows of CTE `rows` matching
    `where`, for their owner (`user_id`); clamped at zero, never creating the metrics row."""
    _names({counter: 1})
    return f"""{name} AS (
        UPDATE user_metrics AS m SET {counter} = greatest(m.{counter} - d.n, 0)
        FROM (SELECT user_id, count(*) AS n FROM {rows} WHERE {where} GROUP BY user_id) AS d
        WHERE m.user_id = d.user_id
    )"""


# Delete report $1 of user $2 (its children go by cascade) and take what it held off the
# owner's counters. Run it with the report row already locked by an earlier statement of the
# transaction (`SELECT … FOR UPDATE`): no child can then be added, and this statement's
# snapshot, taken after the lock, sees every child; the certifications are locked here so
# their latest status is the one uncounted.
DELETE_REPORT_AND_UNCOUNT = """
WITH certs AS (
    SELECT status FROM certification_progress WHERE report_id = $1 FOR UPDATE
), gone AS (
    DELETE FROM reports WHERE id = $1 AND user_id = $2 RETURNING id
)
UPDATE user_metrics SET
    reports_generated = greatest(reports_generated - (SELECT count(*) FROM gone), 0),
    documents_generated = greatest(documents_generated - (
        SELECT count(*) FROM generated_documents WHERE report_id = $1), 0),
    certifications_completed = greatest(certifications_completed - (
        SELECT count(*) FROM certs WHERE status = 'completed'), 0)
WHERE user_id = $2 AND EXISTS (SELECT FROM gone)"""


async def delete_report_and_uncount(
    session: AsyncSession, report_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Run `DELETE_REPORT_AND_UNCOUNT` (the report must be locked already)."""
    await executor.execute(session, DELETE_REPORT_AND_UNCOUNT, report_id, user_id)
