"""The hot path: SQL on the session's own asyncpg connection, rows adopted as ORM objects.

Per statement, SQLAlchemy's ORM execution costs about 150 µs of Python and its Core
execution about 70 µs, where asyncpg itself needs about 25 µs (measured here, local socket).
The statements behind the busiest requests therefore go straight to asyncpg, inside the
session's own transaction, and their rows become ordinary persistent objects of the session,
exactly as if the ORM had loaded them (identity map, change tracking, JSONB mutation
tracking). Everything else stays on the ORM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.attributes import instance_state

from exportsathi_db.models import Base

M = TypeVar("M", bound=Base)
_DRIVER = "exportsathi_db.driver"  # session.info key: (SessionTransaction, adapted connection)


async def driver(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of the session's transaction (begun now if it was not yet).

    SQLAlchemy's asyncpg adapter begins its transaction lazily, on its first statement; a
    statement sent around it would run outside the unit of work, so begin it here.
    """
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(_DRIVER)
    if cached is not None and transaction is not None and cached[0] is transaction:
        adapted = cached[1]  # same unit of work as last time: skip SQLAlchemy's bookkeeping
    else:
        connection = await session.connection()
        adapted = (await connection.get_raw_connection()).dbapi_connection
        session.info[_DRIVER] = (session.sync_session.get_transaction(), adapted)
    if adapted._transaction is None and not adapted.autocommit:
        await adapted._start_transaction()
    raw: asyncpg.Connection = adapted._connection
    return raw


def json_param(value: Any) -> str | None:
    """A JSONB parameter as the connection's codec expects it (text)."""
    return None if value is None else json.dumps(value)


class _Shape:
    """What adopting rows of one model needs, computed once."""

    def __init__(self, model: type[Base]) -> None:
        self.mapper: Mapper[Any] = inspect(model)
        self.columns = tuple(prop.key for prop in self.mapper.column_attrs)
        self.json = frozenset(
            prop.key for prop in self.mapper.column_attrs if isinstance(prop.columns[0].type, JSONB)
        )
        self.select_list = ", ".join(self.columns)


_SHAPES: dict[type[Base], _Shape] = {}


def shape(model: type[Base]) -> _Shape:
    if model not in _SHAPES:
        _SHAPES[model] = _Shape(model)
    return _SHAPES[model]


def columns(model: type[Base], alias: str | None = None) -> str:
    """The model's columns for a SELECT/RETURNING list, in `adopt`'s order."""
    names = shape(model).columns
    return ", ".join(f"{alias}.{name}" for name in names) if alias else shape(model).select_list


def adopt(session: AsyncSession, model: type[M], row: Mapping[str, Any] | asyncpg.Record) -> M:
    """Make `row` (all of `model`'s columns) a persistent object of `session`.

    An object already in the session's identity map is refreshed in place (like
    `populate_existing`), so one row is one object within a unit of work.
    """
    info = shape(model)
    sync = session.sync_session
    key = info.mapper.identity_key_from_primary_key((row["id"],))
    values = {name: row[name] for name in info.columns}
    existing = sync.identity_map.get(key)
    if existing is not None:
        state = instance_state(existing)
        state.dict.update(values)
    else:
        existing = info.mapper.class_manager.new_instance()
        state = instance_state(existing)
        state.dict.update(values)
        state.key = key
        state.session_id = sync.hash_key
        sync.identity_map._add_unpresent(state, key)  # as the ORM's own loading does
    state._commit_all(state.dict)
    if info.json:  # JSONB values become tracked MutableDict/MutableList, as on an ORM load
        info.mapper.class_manager.dispatch.load(state, None)
    obj: M = existing
    return obj


def adopt_all(
    session: AsyncSession, model: type[M], rows: Iterable[Mapping[str, Any] | asyncpg.Record]
) -> list[M]:
    return [adopt(session, model, row) for row in rows]
