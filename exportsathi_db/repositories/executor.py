"""The one execution path of every repository statement, through public APIs only.

Repositories write plain PostgreSQL with `$1, $2, …` parameters. Each statement runs inside
the session's own transaction, which SQLAlchemy begins, commits and rolls back (the unit of
work in `exportsathi_db.database` owns it):

- the first statement of a transaction goes through `AsyncConnection.exec_driver_sql`, so
  SQLAlchemy's asyncpg adapter sends the `BEGIN` itself and always knows it is open;
- later statements of that transaction go straight to the session's asyncpg connection
  (`driver_connection`, SQLAlchemy's documented way to use the driver), which saves about
  60 to 100 µs of Core bookkeeping per statement. `Connection.is_in_transaction()` (asyncpg's
  view of the server's own ReadyForQuery status) tells which case we are in.

Pending ORM changes are flushed first, as an ORM query's autoflush would, so `session.add`
and repository calls in one unit of work see each other. Driver errors are translated here.
Rows come back as tuples in SELECT-list order (an asyncpg `Record` or a SQLAlchemy `Row`,
both indexable and iterable); the read models in `exportsathi_db.views` are built from them.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from exportsathi_db.errors import translate

Row = Sequence[Any]
# session.info key: (weak reference to the SessionTransaction, its AsyncConnection, driver)
_ROUTE = "exportsathi_db.executor.route"


async def fetch(session: AsyncSession, sql: str, *args: Any) -> list[Row]:
    """All rows of `sql`."""
    try:
        connection, driver = await _route(session)
        if driver is None:
            return [tuple(row) for row in await connection.exec_driver_sql(sql, args)]
        _echo(connection, sql, args)
        return cast(list[Row], await driver.fetch(sql, *args))
    except Exception as exc:
        raise translate(exc) from exc


async def fetchrow(session: AsyncSession, sql: str, *args: Any) -> Row | None:
    """The first row of `sql`, or None."""
    try:
        connection, driver = await _route(session)
        if driver is None:
            row = (await connection.exec_driver_sql(sql, args)).first()
            return None if row is None else tuple(row)
        _echo(connection, sql, args)
        return cast(Row | None, await driver.fetchrow(sql, *args))
    except Exception as exc:
        raise translate(exc) from exc


async def execute(session: AsyncSession, sql: str, *args: Any) -> int:
    """Run `sql` for its effect; returns the number of rows it affected."""
    try:
        connection, driver = await _route(session)
        if driver is None:
            return (await connection.exec_driver_sql(sql, args)).rowcount
        _echo(connection, sql, args)
        status: str = await driver.execute(sql, *args)  # e.g. "INSERT 0 3", "DELETE 1"
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0
    except Exception as exc:
        raise translate(exc) from exc


async def _route(session: AsyncSession) -> tuple[AsyncConnection, Any]:
    """The session's connection, and its asyncpg connection if the server has this
    transaction open (else None: the statement must go through SQLAlchemy, whose adapter
    begins the transaction lazily). Pending ORM changes are flushed first.

    Both are remembered for the rest of the session's transaction (by a weak reference to
    it, so no reference cycle), which saves two greenlet switches per statement."""
    sync = session.sync_session
    if sync.autoflush and (sync.new or sync.dirty or sync.deleted):
        await session.flush()
    transaction = sync.get_transaction()
    cached: tuple[Any, AsyncConnection, Any] | None = session.info.get(_ROUTE)
    if cached is not None and transaction is not None and cached[0]() is transaction:
        connection, driver = cached[1], cached[2]
        if driver.is_in_transaction():
            return connection, driver
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None or not driver.is_in_transaction():
        return connection, None
    session.info[_ROUTE] = (weakref.ref(sync.get_transaction()), connection, driver)
    return connection, driver


def _echo(connection: AsyncConnection, sql: str, args: tuple[Any, ...]) -> None:
    """Log a statement sent straight to the driver as the engine's echo (`DB_ECHO`) logs the
    others, values hidden unless the engine shows them (`DB_LOG_PARAMETERS`)."""
    engine = connection.sync_engine
    if engine.echo:
        shown = "[parameters hidden]" if engine.hide_parameters else repr(args)
        engine.logger.info("%s\n[driver] %s", sql, shown)
