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
import logging
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.attributes import instance_state

from exportsathi_db.models import Base

M = TypeVar("M", bound=Base)
# session.info key: (SessionTransaction, adapted connection, the engine if it echoes else None)
_DRIVER = "exportsathi_db.driver"


async def driver(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of the session's transaction (begun now if it was not yet).

    SQLAlchemy's asyncpg adapter begins its transaction lazily, on its first statement; a
    statement sent around it would run outside the unit of work, so begin it here. Pending
    ORM changes are flushed first, as an ORM statement's autoflush would: the rows adopted
    from the result must not overwrite (and so lose) changes not yet written.
    """
    sync = session.sync_session
    if sync.autoflush and (sync.new or sync.dirty or sync.deleted):
        await session.flush()
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(_DRIVER)
    if cached is not None and transaction is not None and cached[0] is transaction:
        adapted, echo = cached[1:]  # same unit of work as last time: skip SQLAlchemy's bookkeeping
    else:
        connection = await session.connection()
        adapted = (await connection.get_raw_connection()).dbapi_connection
        engine = connection.sync_engine
        echo = engine if engine.logger.isEnabledFor(logging.INFO) else None
        session.info[_DRIVER] = (session.sync_session.get_transaction(), adapted, echo)
    if adapted._transaction is None and not adapted.autocommit:
        await adapted._start_transaction()
    raw: asyncpg.Connection = adapted._connection
    return raw if echo is None else cast(asyncpg.Connection, _Echo(raw, echo))


class _Echo:
    """The connection, logging each statement to the engine's logger as SQLAlchemy's echo
    (`DB_ECHO`) does, in order, before it is sent."""

    _SENDING = frozenset({"execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany"})

    def __init__(self, raw: asyncpg.Connection, engine: Engine) -> None:
        self._raw, self._engine = raw, engine

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._raw, name)
        if name not in self._SENDING:
            return attribute

        def sending(query: str, *args: Any, **kwargs: Any) -> Any:
            shown = "[SQL parameters hidden]" if self._engine.hide_parameters else repr(args)
            self._engine.logger.info("%s\n[fast path] %s", query, shown)
            return attribute(query, *args, **kwargs)

        return sending


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


def adopt_loaded(
    session: AsyncSession, model: type[M], row: Mapping[str, Any] | asyncpg.Record
) -> M:
    """`adopt` as a query without `populate_existing` loads: an object already in the session
    keeps its loaded values, only its unloaded (expired) columns are filled from `row`."""
    info = shape(model)
    existing = session.sync_session.identity_map.get(
        info.mapper.identity_key_from_primary_key((row["id"],))
    )
    if existing is None:
        return adopt(session, model, row)
    state = instance_state(existing)
    unloaded = state.unloaded
    missing = [name for name in info.columns if name in unloaded]
    if missing:
        state.dict.update({name: row[name] for name in missing})
        state._commit(state.dict, missing)
        info.mapper.class_manager.dispatch.refresh(state, None, missing)
    obj: M = existing
    return obj
