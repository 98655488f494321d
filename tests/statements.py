"""Count the SQL statements a block of code sends, through public hooks only: SQLAlchemy's
`before_cursor_execute` event for what goes through SQLAlchemy, and asyncpg's query logger
(`Connection.add_query_logger`) for what the executor sends straight to the driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_IGNORED = (
    "SAVEPOINT",
    "RELEASE SAVEPOINT",
    "ROLLBACK TO SAVEPOINT",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
)


# asyncpg looks up a type (an array, a ROW) the first time a connection meets it, with JIT
# switched off around the lookup: the driver's own bookkeeping, once per connection, not
# statements of the code under test.
_ASYNCPG_TYPE_LOOKUP = ("typeinfo_tree", "set_config('jit'")


@asynccontextmanager
async def count_statements(session: AsyncSession) -> AsyncIterator[list[str]]:
    """`async with`: a list that fills with the statements `session` sends inside the block.

    `session` must be bound to a connection (as the `db_session` fixture is). Transaction
    and savepoint bookkeeping is left out; everything else counts.
    """
    bind = session.bind
    assert isinstance(bind, AsyncConnection), "count_statements needs a connection-bound session"
    seen: list[str] = []

    def record(statement: str) -> None:
        if statement.lstrip().upper().startswith(_IGNORED):
            return
        if any(marker in statement for marker in _ASYNCPG_TYPE_LOOKUP):
            return
        seen.append(statement)

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        record(statement)

    def on_query(query: Any) -> None:
        record(query.query)

    driver = bind.sync_connection.connection.driver_connection if bind.sync_connection else None
    assert driver is not None
    target = bind.sync_engine
    event.listen(target, "before_cursor_execute", on_execute)
    driver.add_query_logger(on_query)
    try:
        yield seen
    finally:
        await asyncio.sleep(0)  # asyncpg calls query loggers with `call_soon`: let them run
        event.remove(target, "before_cursor_execute", on_execute)
        driver.remove_query_logger(on_query)
