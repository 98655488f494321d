"""Count the SQL statements a block of code sends, on both paths: SQLAlchemy's execution
(engine events) and the repositories' fast path straight on the asyncpg connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

_IGNORED = (
    "SAVEPOINT",
    "RELEASE SAVEPOINT",
    "ROLLBACK TO SAVEPOINT",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
)
_DRIVER_METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany")


@contextmanager
def count_statements(session: AsyncSession) -> Iterator[list[str]]:
    """Yield a list that fills with the statements `session` sends inside the block.

    Transaction and savepoint bookkeeping is left out; everything else counts.
    """
    engine = session.bind.engine if session.bind is not None else None
    assert engine is not None
    seen: list[str] = []

    def record(statement: str) -> None:
        if not statement.lstrip().upper().startswith(_IGNORED):
            seen.append(statement)

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        record(statement)

    def counting(method: Any) -> Any:
        async def wrapper(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
            record(query)
            return await method(self, query, *args, **kw)

        return wrapper

    target = engine.sync_engine
    event.listen(target, "before_cursor_execute", on_execute)
    with ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        for name in _DRIVER_METHODS:
            patch.setattr(asyncpg.Connection, name, counting(getattr(asyncpg.Connection, name)))
        try:
            yield seen
        finally:
            event.remove(target, "before_cursor_execute", on_execute)
