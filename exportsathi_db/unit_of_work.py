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

- the server did not answer within `DB_COMMAND_TIMEOUT` (a silent network partition): the
  connection is closed at once, without waiting for a rollback or a goodbye that would not
  come, and `ConnectionTimeoutError` (retryable) is raised;
- a write refused because the server is read-only (SQLSTATE 25006) outside `read_scope()`:
  the server is a standby (a demoted primary). The connection is invalidated, the pool's
  older connections are retired, and `ServerReadOnlyError` (retryable) is raised.

Cleanup runs in a task of its own that a second cancellation cannot interrupt; the block
waits for it, then re-raises. A rollback gets `cleanup_timeout` seconds (`DB_CLEANUP_TIMEOUT`);
an invalidation closes the connection, gracefully for at most 2 s (SQLAlchemy's own limit),
immediately when the server is known not to answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from exportsathi_db.engine import retire_connections
from exportsathi_db.errors import (
    CommitOutcomeUnknownError,
    ReadOnlyError,
    ServerReadOnlyError,
    is_command_timeout,
    translate,
)

logger = logging.getLogger("exportsathi_db")

# The default of `cleanup_timeout` (DB_CLEANUP_TIMEOUT): how long a rollback may take before
# the connection is closed instead.
CLEANUP_TIMEOUT_SECONDS = 5.0
# session.info key: the asyncpg connection of the session's transaction.
_DRIVER = "exportsathi_db.driver_connection"


class UnitSession(Session):
    """The sync session class of this package's session factories: it remembers the driver
    connection of its transaction, so a unit of work can close it at once (no I/O) when the
    server stops answering."""


@event.listens_for(UnitSession, "after_begin")
def _remember_driver(session: Session, _tx: SessionTransaction, connection: Connection) -> None:
    session.info[_DRIVER] = connection.connection.driver_connection


@asynccontextmanager
async def unit_of_work(
    session: AsyncSession,
    *,
    commit: bool = True,
    cleanup_timeout: float = CLEANUP_TIMEOUT_SECONDS,
) -> AsyncIterator[AsyncSession]:
    """Run the block in `session`'s transaction; commit (if `commit`) or roll back; close.

    `commit=False` is a read-only unit (`read_scope`): a write refused there stays a
    `ReadOnlyError`. In a writing unit the same refusal means the server is a standby.
    """
    try:
        yield session
        if commit:
            await session.flush()  # errors here are ordinary: COMMIT was not sent yet
    except BaseException as exc:
        error = translate(exc)
        demoted = commit and isinstance(error, ReadOnlyError)
        unresponsive = is_command_timeout(exc)
        if unresponsive:
            _terminate(session)
        clean = isinstance(exc, Exception) and not (demoted or unresponsive)
        await _uninterruptible(_abandon(session, clean=clean, timeout=cleanup_timeout))
        if demoted:
            if isinstance(session.bind, AsyncEngine):
                retire_connections(session.bind)
            logger.warning(
                "the server refused a write as read-only (SQLSTATE 25006): it is a standby, "
                "e.g. a demoted primary; its connections are retired"
            )
            error = ServerReadOnlyError(
                "the server is read-only (a standby, e.g. a primary demoted by a failover; "
                "SQLSTATE 25006): the connection is closed; retry the unit of work"
            )
        if error is exc:
            raise
        raise error from exc
    if commit:
        await _commit(session, cleanup_timeout)
        await session.close()  # after COMMIT no I/O is left: the connection returns to the pool
    else:  # a read-only unit ends with a ROLLBACK; if that fails or is cancelled, the
        # connection's state is unknown: close it (in a cleanup that cannot be interrupted)
        try:
            await session.rollback()
        except BaseException as exc:
            if is_command_timeout(exc):
                _terminate(session)
            await _uninterruptible(_abandon(session, clean=False, timeout=cleanup_timeout))
            error = translate(exc)
            if error is exc:
                raise
            raise error from exc
        await session.close()


def _terminate(session: AsyncSession) -> None:
    """Close the session's connection now, without I/O (asyncpg's `terminate`): for a server
    that does not answer. The invalidation that follows then has nothing to wait for."""
    driver = session.sync_session.info.get(_DRIVER)
    if driver is not None:
        driver.terminate()


async def _commit(session: AsyncSession, cleanup_timeout: float) -> None:
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
            await _uninterruptible(_abandon(session, clean=True, timeout=cleanup_timeout))
            raise error from exc  # the server answered: rolled back, outcome known
        if is_command_timeout(exc):
            _terminate(session)
        await _uninterruptible(_abandon(session, clean=False, timeout=cleanup_timeout))
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


async def _abandon(session: AsyncSession, *, clean: bool, timeout: float) -> None:
    """End a failed unit: roll back if the connection's state is known, else (or if the
    rollback fails or takes longer than `timeout`) invalidate it, so it is closed rather
    than pooled."""
    if clean:
        try:
            async with asyncio.timeout(timeout):
                await session.rollback()
                await session.close()
            return
        except Exception as exc:
            logger.info("rollback failed (%s): closing the connection", type(exc).__name__)
            if isinstance(exc, TimeoutError):
                _terminate(session)  # the server does not answer: do not wait for a goodbye
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
