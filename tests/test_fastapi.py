"""A real FastAPI app on `DbSession`: the unit of work is settled before the response leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import exportsathi_db.dependencies
from exportsathi_db.database import DatabaseConnection
from exportsathi_db.dependencies import DbSession, add_error_handlers, get_db
from tests.factories import unique
from tests.helpers import client, committed, new_user

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


def build_app(*, handlers: bool) -> FastAPI:
    app = FastAPI()
    if handlers:
        add_error_handlers(app)

    @app.post("/users/{email}", status_code=201)
    async def create(email: str, session: DbSession) -> dict[str, str]:
        session.add(new_user(email))
        await session.flush()
        return {"email": email}

    @app.post("/users/{email}/then-fail")
    async def create_then_fail(email: str, session: DbSession) -> None:
        session.add(new_user(email))
        await session.flush()
        raise RuntimeError("the handler failed after writing")

    @app.post("/users/{email}/at-commit", status_code=201)
    async def create_at_commit(email: str, session: DbSession) -> dict[str, str]:
        session.add(new_user(email))  # not flushed: a duplicate email fails only at commit
        return {"email": email}

    @app.post("/request-scoped/{email}", status_code=201)
    async def request_scoped(
        email: str,
        session: AsyncSession = Depends(get_db),  # noqa: B008 - FastAPI's idiom
    ) -> dict[str, str]:
        session.add(new_user(email))
        return {"email": email}

    return app


class CommittedAtResponseStart:
    """ASGI middleware: when the response starts, count the committed users with `email`."""

    def __init__(self, app: ASGIApp, db: DatabaseConnection) -> None:
        self.app, self.db = app, db
        self.email = ""
        self.seen: list[int] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        async def probe(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append(await committed(self.db, self.email))
            await send(message)

        await self.app(scope, receive, probe)


@pytest_asyncio.fixture
async def emails(
    db: DatabaseConnection, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[str]]:
    """`get_db` uses the test database; users committed under these emails are deleted after."""
    monkeypatch.setattr(exportsathi_db.dependencies, "db_connection", db)
    made: list[str] = []
    yield made
    async with db.session_scope() as session:
        await session.execute(text("DELETE FROM users WHERE lower(email) = ANY(:e)"), {"e": made})


async def test_a_write_is_committed_before_the_response_starts(
    db: DatabaseConnection, emails: list[str]
) -> None:
    probe = CommittedAtResponseStart(build_app(handlers=True), db)
    probe.email = f"{unique('api-commit')}@example.in"
    emails.append(probe.email)
    async with client(probe) as http:
        response = await http.post(f"/users/{probe.email}")
    assert response.status_code == 201
    assert probe.seen == [1]


async def test_the_default_request_scope_would_commit_too_late(
    db: DatabaseConnection, emails: list[str]
) -> None:
    """Why `DbSession` uses scope="function": with plain Depends the client hears first."""
    probe = CommittedAtResponseStart(build_app(handlers=True), db)
    probe.email = f"{unique('api-late')}@example.in"
    emails.append(probe.email)
    async with client(probe) as http:
        response = await http.post(f"/request-scoped/{probe.email}")
    assert response.status_code == 201
    assert probe.seen == [0]
    assert await committed(db, probe.email) == 1  # ...committed only after the response


async def test_a_handler_error_after_writing_leaves_nothing(
    db: DatabaseConnection, emails: list[str]
) -> None:
    emails.append(f"{unique('api-fail')}@example.in")
    async with client(build_app(handlers=True)) as http:
        response = await http.post(f"/users/{emails[0]}/then-fail")
    assert response.status_code == 500
    assert await committed(db, emails[0]) == 0


@pytest.mark.parametrize(("handlers", "status"), [(True, 409), (False, 500)])
async def test_a_failed_commit_is_never_a_success(
    db: DatabaseConnection, emails: list[str], handlers: bool, status: int
) -> None:
    emails.append(f"{unique('api-taken')}@example.in")
    async with client(build_app(handlers=handlers)) as http:
        assert (await http.post(f"/users/{emails[0]}")).status_code == 201
        duplicate = await http.post(f"/users/{emails[0].upper()}/at-commit")
    assert duplicate.status_code == status
    if handlers:
        assert duplicate.json() == {
            "detail": "email: an account with this email already exists",
            "error": "AlreadyExistsError",
        }
    assert await committed(db, emails[0]) == 1
