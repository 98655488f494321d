"""Shared by the repositories' files: value checks before SQL, ownership, counters, and the
fast path's helpers (rows adopted as a plain load would, typed parameters).

Statements are built once (module constants or cached per shape) and take their values as
bound parameters: building and cache-keying a statement per call costs more than the
round trip itself. Value parameters are named `v_<column>`.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import BindParameter, Table, Update, bindparam, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from exportsathi_db.errors import InvalidDataError
from exportsathi_db.models import Base, Report, UserMetrics, new_id
from exportsathi_db.repositories.base import check_id
from exportsathi_db.repositories.fastpath import shape

M = TypeVar("M", bound=Base)
_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]

# The report's id and owner, only when the acting user owns it (another user's = missing).
OWNED_REPORT = select(Report.id, Report.user_id).where(
    Report.id == bindparam("scope_report_id"), Report.user_id == bindparam("scope_user_id")
)


def owner(report_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    """The checked parameters of OWNED_REPORT (and of every statement scoped like it)."""
    return {
        "scope_report_id": check_id("report_id", report_id),
        "scope_user_id": check_id("user_id", user_id),
    }


def check_fields(fields: Iterable[str], allowed: frozenset[str]) -> None:
    """Reject keyword arguments that are not changeable columns, naming them."""
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidDataError(
            ", ".join(sorted(unknown)), f"cannot be set here; allowed: {', '.join(sorted(allowed))}"
        )


def value_param(model: type[Base], name: str) -> BindParameter[Any]:
    """The bound parameter carrying a value of column `name`, typed like the column."""
    return bindparam(f"v_{name}", type_=model.__table__.columns[name].type)


def value_params(values: dict[str, Any]) -> dict[str, Any]:
    """Values keyed by their `value_param` names."""
    return {f"v_{name}": value for name, value in values.items()}


@functools.lru_cache(maxsize=64)
def insert_under_report(
    model: type[Base], names: tuple[str, ...], now: tuple[str, ...] = ()
) -> ExecutableReturnsRows:
    """INSERT ... SELECT FROM the owned report: ownership check and insert in one statement,
    which inserts nothing (and fails nothing) when the report is not the user's.

    Columns `names` take `v_<name>` parameters and columns `now` the transaction's time;
    execute with `new_row(...)`.
    """
    table = table_of(model)
    source = select(
        bindparam("new_id", type_=table.columns["id"].type),
        Report.user_id,
        Report.id,
        *(value_param(model, name) for name in names),
        *(func.now() for _ in now),
    ).where(Report.id == bindparam("scope_report_id"), Report.user_id == bindparam("scope_user_id"))
    columns = ["id", "user_id", "report_id", *names, *now]
    return returning_orm(model, insert(table).from_select(columns, source))


def table_of(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def returning_orm(model: type[Base], statement: Any) -> ExecutableReturnsRows:
    """A Core INSERT/UPDATE returning `model`'s rows, loaded as ORM objects.

    (The ORM's own INSERT would read a parameter dict as rows to bulk-insert.)
    """
    returning = statement.returning(*model.__table__.columns)
    loaded = select(model).from_statement(returning)
    return loaded.execution_options(populate_existing=True)


def new_row(report_id: uuid.UUID, user_id: uuid.UUID, values: dict[str, Any]) -> dict[str, Any]:
    """The parameters of an `insert_under_report` statement."""
    return {"new_id": new_id(), **owner(report_id, user_id), **value_params(values)}


@functools.lru_cache(maxsize=16)
def _decrement(names: tuple[str, ...]) -> Update:
    values = {
        name: func.greatest(getattr(UserMetrics, name) - value_param(UserMetrics, name), 0)
        for name in names
    }
    return (
        update(UserMetrics)
        .where(UserMetrics.user_id == bindparam("scope_user_id"))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def decrement_metrics(session: AsyncSession, user_id: uuid.UUID, **deltas: int) -> None:
    """Atomically subtract from a user's counters, never below zero and never creating the row.

    Rows made outside this package (raw SQL, factories) were never counted; clamping keeps
    the counters non-negative instead of failing the caller's transaction.
    """
    statement = _decrement(tuple(sorted(deltas)))
    await session.execute(statement, {"scope_user_id": user_id, **value_params(deltas)})


def record(model: type[Base], values: Iterable[Any]) -> dict[str, Any]:
    """A `ROW(columns(model))` value (asyncpg decodes it to a tuple) keyed by column name."""
    return dict(zip(shape(model).columns, values, strict=True))


def typed(model: type[Base], name: str, position: int) -> str:
    """Parameter `$position` cast to column `name`'s type without its length or precision,
    which the assignment still checks: a bare parameter in a SELECT list has no type."""
    sql_type = model.__table__.columns[name].type.compile(dialect=_POSTGRESQL)
    return f"${position}::{re.sub(r'[(].*[)]', '', sql_type)}"
