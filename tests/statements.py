"""Count the SQL statements a block of code sends (an engine event listener)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

_IGNORED = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@contextmanager
def count_statements(session: AsyncSession) -> Iterator[list[str]]:
    """Yield a list that fills with the statements `session` executes inside the block.

    Savepoint bookkeeping of the test fixture is left out; everything else counts.
    """
    engine = session.bind.engine if session.bind is not None else None
    assert engine is not None
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(_IGNORED):
            seen.append(statement)

    target = engine.sync_engine
    event.listen(target, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(target, "before_cursor_execute", record)
