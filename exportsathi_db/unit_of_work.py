"""The unit of work: one session, one transaction, and always a known ending.

It commits when the block ends normally and rolls back when it raises. What it guarantees
under failure, whatever the moment (before or during `BEGIN`, mid-statement, during
`COMMIT`, during the cleanup itself, cancelled twice as Starlette does):

- an ordinary error: the transaction is rolled back and the connection goes back to the pool
  clean; if the rollback itself fails or does not finish within `cleanup_timeout`, the
  connection is invalidated (closed) instead;
- a cancellation (`CancelledError`, so also `asyncio.timeout`): the connection is
  invalidated, never pooled. A cancelled statement or `BEGIN` leaves the connection in a
  state no client can know (asyncpg itself may keep a stale transaction marker), and closing
  it is the only proof that no transaction stays open: the server rolls back what was open;
- a connection lost, or the task cancelled, while `COMMIT` is in flight: nobody can know
  whether the server committed. The connection is invalidated, a WARNING is logged, and a
  lost connection raises `CommitOutcomeUnknownError` (a cancellation stays a cancellation).
  Retry such a unit only if it is idempotent by a key you chose, or read back first.

Cleanup runs in a task of its own that a second cancellation cannot interrupt; the block
waits for it, then re-raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import CommitOutcomeUnknownError, translate

logger = logging.getLogger("exportsathi_db")

# How long a rollback may take before the connection is closed instead.
CLEANUP_TIMEOUT_SECONDS = 5.0


@asynccontextmanager
async def unit_of_work(
    session: AsyncSession, *, commit: bool = True
) -> AsyncIterator[AsyncSession]:
    """Run the block in `session`'s transaction; commit (if `commit`) or roll back; close."""
    try:
        yield session
        if commit:
            await session.flush()  # errors here are ordinary: COMMIT was not sent yet
    except BaseException as exc:
        await _uninterruptible(_abandon(session, clean=isinstance(exc, Exception)))
        error = translate(exc)
        if error is exc:
            raise
        raise error from exc
    if commit:
        await _commit(session)
        await session.close()  # after COMMIT no I/O is left: the connection returns to the pool
    else:  # a read-only unit ends with a ROLLBACK, which must finish even if cancelled
        await _uninterruptible(_abandon(session, clean=True))


async def _commit(session: AsyncSession) -> None:
    task = asyncio.current_task()
    cancelling = task.cancelling() if task is not None else 0
    try:
        await session.commit()
        # A cancellation delivered during COMMIT that the driver stack swallowed (SQLAlchemy
        # before 2.1.7 did) must not look like success.
        if task is not None and task.cancelling() > cancelling:
            raise asyncio.CancelledError
    except BaseException as exc:
        error = translate(exc)
        if isinstance(exc, Exception) and _server_refused(exc):
            await _uninterruptible(_abandon(session, clean=True))
            raise error from exc  # the server answered: rolled back, outcome known
        await _uninterruptible(_abandon(session, clean=False))
        logger.warning(
            "the connection was lost or the task cancelled during COMMIT (%s): the unit of "
            "work may or may not be committed",
            type(exc).__name__,
        )
        if not isinstance(exc, Exception):
            raise
        raise CommitOutcomeUnknownError(
            "the connection was lost during COMMIT: the unit of work may or may not be "
            "committed; retry only if it is idempotent, or read back to check"
        ) from exc


def _server_refused(exc: BaseException) -> bool:
    """True when the server itself answered COMMIT with an error (e.g. a deferred constraint
    or a serialization failure): then the transaction is known to be rolled back. Connection
    errors (SQLSTATE classes 08 and 57P, e.g. a terminated backend) say nothing of that."""
    seen: BaseException | None = exc
    while seen is not None:
        sqlstate = getattr(seen, "sqlstate", None)
        if sqlstate:
            return not str(sqlstate).startswith(("08", "57P"))
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


async def _abandon(session: AsyncSession, *, clean: bool) -> None:
    """End a failed unit: roll back if the connection's state is known, else (or if the
    rollback fails or hangs) invalidate it, so it is closed rather than pooled."""
    if clean:
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT_SECONDS):
                await session.rollback()
                await session.close()
            return
        except Exception as exc:
            logger.info("rollback failed (%s): closing the connection", type(exc).__name__)
    await session.invalidate()


async def _uninterruptible(cleanup: Coroutine[Any, Any, None]) -> None:
    """Await `cleanup` (a coroutine) to its end even if this task is cancelled meanwhile,
    then re-raise the cancellation."""
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
    if not task.cancelled() and task.exception() is not None:
        logger.info("cleanup failed: %s", type(task.exception()).__name__)
    if cancelled:
        raise asyncio.CancelledError
