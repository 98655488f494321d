"""The unit of work, the health check, the event-loop guard and password hygiene."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.database import DatabaseConnection, check_db_connection
from exportsathi_db.errors import AlreadyExistsError, ConfigurationError, DatabaseUnavailableError
from tests.factories import unique
from tests.helpers import CANARY, committed, free_port, in_use, new_user

T = TypeVar("T")


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest_asyncio.fixture
async def emails(db: DatabaseConnection) -> AsyncIterator[list[str]]:
    """Emails of users a test commits; deleted (with everything of theirs) afterwards."""
    made: list[str] = []
    yield made
    async with db.session_scope() as session:
        await session.execute(text("DELETE FROM users WHERE email = ANY(:e)"), {"e": made})


async def test_session_scope_commits_on_success_and_returns_the_connection(
    db: DatabaseConnection, emails: list[str]
) -> None:
    emails.append(f"{unique('uow')}@example.in")
    idle = in_use(db)
    async with db.session_scope() as session:
        session.add(new_user(emails[0]))
        await session.flush()
        assert in_use(db) == idle + 1
        assert await committed(db, emails[0]) == 0  # not yet: still in the transaction
    assert await committed(db, emails[0]) == 1
    assert in_use(db) == idle


async def test_session_scope_rolls_back_and_reraises_on_error(
    db: DatabaseConnection, emails: list[str]
) -> None:
    emails.append(f"{unique('uow')}@example.in")
    idle = in_use(db)
    with pytest.raises(LookupError, match="handler failed"):
        async with db.session_scope() as session:
            session.add(new_user(emails[0]))
            await session.flush()
            raise LookupError("handler failed")
    assert await committed(db, emails[0]) == 0
    assert in_use(db) == idle


async def test_session_scope_translates_a_failed_commit(
    db: DatabaseConnection, emails: list[str]
) -> None:
    emails.extend([f"{unique('uow')}@example.in", f"{unique('uow')}@example.in"])
    first, second = emails
    idle = in_use(db)
    async with db.session_scope() as session:
        session.add(new_user(first))
    with pytest.raises(AlreadyExistsError, match="email"):
        async with db.session_scope() as session:
            session.add(new_user(second))  # would be written with the duplicate, atomically
            session.add(new_user(first.upper()))  # flushed only by commit()
    assert await committed(db, first) == 1
    assert await committed(db, second) == 0
    assert in_use(db) == idle


async def test_check_db_connection(db: DatabaseConnection, database_url: URL) -> None:
    assert await check_db_connection(db) is True
    missing = DatabaseConnection(database_url.set(database="no_such_database"))
    try:
        assert await check_db_connection(missing) is False
    finally:
        await missing.dispose()


async def _timed(check: Awaitable[T]) -> tuple[T, float]:
    start = time.monotonic()
    result = await check
    return result, time.monotonic() - start


async def test_check_db_connection_is_false_fast_for_a_dead_port(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    dead = DatabaseConnection(database_url.set(port=free_port(), password=CANARY))
    caplog.set_level(logging.DEBUG)
    try:
        ok, elapsed = await _timed(check_db_connection(dead))
    finally:
        await dead.dispose()
    assert ok is False
    assert elapsed < 5
    assert CANARY not in caplog.text


async def test_check_db_connection_gives_up_on_a_server_that_never_answers(
    database_url: URL, blackhole: int
) -> None:
    silent = DatabaseConnection(database_url.set(port=blackhole))
    try:
        ok, elapsed = await _timed(check_db_connection(silent, timeout=1))
    finally:
        await silent.dispose()
    assert ok is False
    assert 0.9 < elapsed < 2.5


def texts_of(error: BaseException) -> str:
    """Everything an error prints: the formatted chain, and str/repr of every link."""
    parts = ["".join(traceback.format_exception(error))]
    link: BaseException | None = error
    while link is not None:
        parts += [str(link), repr(link), repr(link.args)]
        link = link.__cause__ or link.__context__
    return "\n".join(parts)


async def _select_one(db: DatabaseConnection) -> None:
    async with db.session_scope() as session:
        await session.execute(text("SELECT 1"))


@pytest.mark.parametrize("where", ["wrong password", "dead server"])
async def test_the_password_never_shows(database_url: URL, where: str) -> None:
    url = database_url.set(password=CANARY)
    if where == "dead server":
        url = url.set(port=free_port())
    db = DatabaseConnection(url.render_as_string(hide_password=False))
    shown = [repr(db)]
    try:
        shown += [repr(db), str(db.url), repr(db.url), repr(db.engine), repr(db.engine.url)]
        with pytest.raises(Exception) as failure:
            await _select_one(db)
        shown.append(texts_of(failure.value))
    finally:
        await db.dispose()
    if where == "dead server":
        assert isinstance(failure.value, DatabaseUnavailableError)
    assert str(url.port) in "".join(shown[1:3])  # the reprs do say where
    assert all(CANARY not in text_ for text_ in shown)


async def _in_another_loop(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()` on a brand-new event loop in a worker thread."""

    async def bounded() -> T:
        async with asyncio.timeout(10):
            return await work()

    return await asyncio.to_thread(asyncio.run, bounded())


async def test_a_connection_refuses_another_loop_until_disposed(database_url: URL) -> None:
    db = DatabaseConnection(database_url)
    try:
        await _select_one(db)  # bound to this loop now, session factory built
        with pytest.raises(ConfigurationError, match="another running event loop"):
            await _in_another_loop(lambda: _select_one(db))

        async def engine() -> object:
            return db.engine

        with pytest.raises(ConfigurationError, match="another running event loop"):
            await _in_another_loop(engine)
        assert await check_db_connection(db) is True

        await db.dispose()

        async def use_then_dispose() -> None:
            await _select_one(db)
            await db.dispose()

        await _in_another_loop(use_then_dispose)
        await _select_one(db)  # and back here, after the other loop disposed it
    finally:
        await db.dispose()
