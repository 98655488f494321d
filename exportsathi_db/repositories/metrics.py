"""The `user_metrics` counters: the one module that changes them, and reads them.

Counters count live rows: a report, a document or a completed certification adds one when
it appears and takes one off when it goes; an export adds one with its savings. Each change
is one atomic statement (an upsert that creates the user's row on first use, or a decrement
clamped at zero). A user without a row yet reads as zeros.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.models import new_id
from exportsathi_db.repositories import executor
from exportsathi_db.views import UserMetricsView
from exportsathi_db.views.base import column_list

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
    return (
        f"INSERT INTO user_metrics AS m (id, user_id, {', '.join(names)}) VALUES ($1, $2, {deltas})"
        f" ON CONFLICT (user_id) DO UPDATE SET {_added(names)}"
    )


def _added(names: tuple[str, ...]) -> str:
    """The ON CONFLICT assignments adding the proposed row's `names` to the existing ones."""
    return ", ".join(f"{name} = m.{name} + EXCLUDED.{name}" for name in names)


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


def _read_column(name: str) -> str:
    """A column of UserMetricsView, read from users u LEFT JOIN user_metrics m."""
    if name == "user_id":
        return "u.id"
    if name == "cost_savings":  # numeric(12, 2): Decimal('0.00'), as a stored zero reads
        return "coalesce(m.cost_savings, 0.00)"
    return f"coalesce(m.{name}, 0)" if name in COUNTERS else f"m.{name}"


# The user (no row: no such user) LEFT JOIN their counters, zeros before their first event.
# $1 user id.
GET = f"""SELECT {", ".join(_read_column(f.name) for f in dataclasses.fields(UserMetricsView))}
FROM users u LEFT JOIN user_metrics m ON m.user_id = u.id WHERE u.id = $1"""

# One completed export: INSERT ... SELECT FROM users (no row: no such user, nothing written,
# the transaction still usable) ON CONFLICT (user_id) adding to the counters. $1 new row id,
# $2 user id, $3 savings, $4 days, $5 exported at (NULL: the transaction's time).
_EXPORTED = ("exports_completed", "cost_savings", "timeline_reduction_days")
RECORD_EXPORT = f"""INSERT INTO user_metrics AS m
    (id, user_id, {", ".join(_EXPORTED)}, last_export_date)
SELECT $1::uuid, u.id, 1, $3::numeric(12, 2), $4::integer, coalesce($5::timestamptz, now())
FROM users u WHERE u.id = $2
ON CONFLICT (user_id) DO UPDATE SET {_added(_EXPORTED)},
    last_export_date = greatest(m.last_export_date, EXCLUDED.last_export_date)
RETURNING {column_list(UserMetricsView)}"""


async def get(session: AsyncSession, user_id: uuid.UUID) -> UserMetricsView | None:
    """The user's counters (zeros before their first event), or None if no such user."""
    row = await executor.fetchrow(session, GET, user_id)
    return None if row is None else UserMetricsView(*row)


async def record_export(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    cost_savings: Decimal | int,
    timeline_reduction_days: int,
    exported_at: datetime | None,
) -> UserMetricsView | None:
    """Count one export and add its savings and days (1 statement); `last_export_date` only
    moves forward. The counters after it, or None if no such user (nothing written).

    The caller validates the values; this module only knows the SQL.
    """
    row = await executor.fetchrow(
        session,
        RECORD_EXPORT,
        new_id(),
        user_id,
        cost_savings,
        timeline_reduction_days,
        exported_at,
    )
    return None if row is None else UserMetricsView(*row)


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
