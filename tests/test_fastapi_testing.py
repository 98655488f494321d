"""`add_error_handlers` statuses, and `override_get_db` for tests on a rolled-back session."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.dependencies import DbSession, add_error_handlers
from exportsathi_db.errors import (
    AlreadyExistsError,
    ConflictError,
    DatabaseUnavailableError,
    ExportSathiDBError,
    InvalidDataError,
    NotFoundError,
)
from exportsathi_db.testing import override_get_db
from tests.factories import make_user, unique
from tests.helpers import client, committed, new_user

ERRORS: dict[str, tuple[ExportSathiDBError, int]] = {
    "missing": (NotFoundError("report not found"), 404),
    "taken": (AlreadyExistsError("email: already taken"), 409),
    "conflict": (ConflictError("retry it"), 409),
    "invalid": (InvalidDataError("risk_score", "must be between 0 and 100"), 422),
    "down": (DatabaseUnavailableError("the database connection was lost"), 503),
    "other": (ExportSathiDBError("something else"), 500),
}


@pytest.fixture
def app() -> FastAPI:
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/raise/{kind}")
    async def raise_(kind: str) -> None:
        raise ERRORS[kind][0]

    @app.post("/users/{email}", status_code=201)
    async def create(email: str, session: DbSession) -> dict[str, str]:
        session.add(new_user(email))
        await session.flush()
        return {"email": email}

    @app.post("/users/{email}/then-fail")
    async def create_then_fail(email: str, session: DbSession) -> None:
        session.add(new_user(email))
        await session.flush()
        raise NotFoundError("a later step found nothing")

    return app


@pytest.mark.parametrize("kind", list(ERRORS))
async def test_errors_map_to_http_statuses(app: FastAPI, kind: str) -> None:
    error, status = ERRORS[kind]
    async with client(app) as http:
        response = await http.get(f"/raise/{kind}")
    assert response.status_code == status
    assert response.json() == {"detail": str(error), "error": type(error).__name__}
    assert response.headers.get("retry-after") == ("1" if error.retryable else None)


async def _users(session: AsyncSession, email: str) -> int:
    sql = text("SELECT count(*) FROM users WHERE email = :e")
    count: int = (await session.execute(sql, {"e": email})).scalar_one()
    return count


async def test_override_get_db_uses_the_rolled_back_test_session(
    app: FastAPI, db_session: AsyncSession
) -> None:
    existing = (await make_user(db_session)).email  # made before the requests
    created, failed = f"{unique('ovr')}@example.in", f"{unique('ovr')}@example.in"
    with override_get_db(app, db_session):
        async with client(app) as http:
            assert (await http.post(f"/users/{created}")).status_code == 201
            assert (await http.post(f"/users/{failed}/then-fail")).status_code == 404
    assert await _users(db_session, created) == 1  # committed to the test's savepoint
    assert await _users(db_session, failed) == 0  # the failing request was rolled back
    assert await _users(db_session, existing) == 1  # and only that request
    assert app.dependency_overrides == {}


async def test_the_overridden_session_is_invisible_outside_the_test(
    app: FastAPI, db_session: AsyncSession, db: DatabaseConnection
) -> None:
    email = f"{unique('ovr')}@example.in"
    with override_get_db(app, db_session):
        async with client(app) as http:
            assert (await http.post(f"/users/{email}")).status_code == 201
    assert await _users(db_session, email) == 1
    assert await committed(db, email) == 0  # another connection: nothing was really committed


async def test_override_covers_read_sessions_so_a_test_reads_its_own_writes(
    db_session: AsyncSession,
) -> None:
    """The example app writes with `DbSession` and reads with `ReadDbSession`: with one
    override both use the test's session (before, the read went to another database: 404)."""
    from examples.app import app as example_app

    with override_get_db(example_app, db_session):
        async with client(example_app) as http:
            user = await http.post(
                "/users",
                json={
                    "email": f"{unique('override')}@example.in",
                    "password_hash": "$2b$12$" + "a" * 53,
                    "business_type": "Merchant",
                    "company_size": "Micro",
                },
            )
            assert user.status_code == 201, user.text
            user_id = user.json()["id"]
            report = await http.post(
                f"/users/{user_id}/reports",
                json={
                    "product_name": "Darjeeling tea",
                    "destination_country": "Japan",
                    "report_data": {"score": 80},
                },
            )
            assert report.status_code == 201, report.text
            page = await http.get(f"/users/{user_id}/reports/{report.json()['id']}")
    assert page.status_code == 200, page.text
    assert page.json()["product_name"] == "Darjeeling tea"
    assert example_app.dependency_overrides == {}
