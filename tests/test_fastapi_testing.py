"""`add_error_handlers` statuses, bodies and OpenAPI documentation, and `override_get_db` for
tests on a rolled-back session."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.openapi.utils import validation_error_definition
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.dependencies import (
    ERROR_RESPONSES,
    DbSession,
    ErrorResponse,
    add_error_handlers,
)
from exportsathi_db.errors import (
    AlreadyExistsError,
    ConflictError,
    DatabaseUnavailableError,
    ExportSathiDBError,
    InvalidDataError,
    NotFoundError,
    QueryTimeoutError,
    ReadOnlyError,
    TransactionConflictError,
)
from exportsathi_db.testing import override_get_db
from tests.factories import make_user, unique
from tests.helpers import client, committed, new_user


def failure(error: ExportSathiDBError) -> dict[str, str]:
    """The body of a 404, 409, 503 or 500 (`ErrorResponse`)."""
    return {"detail": str(error), "error": type(error).__name__}


def invalid(loc: list[str | int], msg: str) -> dict[str, Any]:
    """The body of a 422 (FastAPI's HTTPValidationError)."""
    return {"detail": [{"type": "invalid_data", "loc": loc, "msg": msg}]}


# What a route raises, and the status and exact body the handlers answer with.
ERRORS: dict[str, tuple[ExportSathiDBError, int, dict[str, Any]]] = {
    "missing": (e := NotFoundError("report not found"), 404, failure(e)),
    "taken": (e := AlreadyExistsError("email: already taken"), 409, failure(e)),
    "conflict": (e := ConflictError("the report is gone"), 409, failure(e)),
    "race": (e := TransactionConflictError("retry it", sqlstate="40001"), 409, failure(e)),
    "invalid": (
        InvalidDataError("risk_score", "must be between 0 and 100"),
        422,
        invalid(["body", "risk_score"], "must be between 0 and 100"),
    ),
    "nested": (
        InvalidDataError("messages[3].content", "must not contain NUL characters"),
        422,
        invalid(["body", "messages", 3, "content"], "must not contain NUL characters"),
    ),
    "not-a-field": (
        InvalidDataError("$3 of row #2", "is out of range for its column"),
        422,
        invalid(["body", "$3 of row #2"], "is out of range for its column"),
    ),
    "path": (  # `kind` is the route's path parameter
        InvalidDataError("kind", "must be a known kind"),
        422,
        invalid(["path", "kind"], "must be a known kind"),
    ),
    "down": (e := DatabaseUnavailableError("the database connection was lost"), 503, failure(e)),
    "slow": (e := QueryTimeoutError("the statement was cancelled"), 503, failure(e)),
    "read-only": (e := ReadOnlyError("cannot write in a read-only unit of work"), 500, failure(e)),
    "other": (e := ExportSathiDBError("something else"), 500, failure(e)),
}


class Scored(BaseModel):
    risk_score: int


@pytest.fixture
def app() -> FastAPI:
    app = FastAPI(responses=ERROR_RESPONSES)
    add_error_handlers(app)

    @app.get("/raise/{kind}")
    async def raise_(kind: str) -> None:
        raise ERRORS[kind][0]

    @app.post("/scored")
    async def scored(body: Scored) -> None:
        raise InvalidDataError("risk_score", "must be between 0 and 100")

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
async def test_errors_map_to_http_statuses_and_exact_bodies(app: FastAPI, kind: str) -> None:
    error, status, body = ERRORS[kind]
    async with client(app) as http:
        response = await http.get(f"/raise/{kind}")
    assert response.status_code == status
    assert response.json() == body
    assert response.headers.get("retry-after") == ("1" if error.retryable else None)
    if status == 422:  # an instance of FastAPI's own ValidationError schema
        for item in response.json()["detail"]:
            assert set(validation_error_definition["required"]) <= set(item)
            assert set(item) <= set(validation_error_definition["properties"])
    else:
        assert ErrorResponse.model_validate(response.json()).model_dump() == body


async def test_a_package_422_reads_like_fastapis_own(app: FastAPI) -> None:
    """One client code path for both: the same keys, and `loc` = source, then field."""
    async with client(app) as http:
        by_fastapi = await http.post("/scored", json={"risk_score": "high"})
        by_package = await http.post("/scored", json={"risk_score": 101})
    assert by_fastapi.status_code == by_package.status_code == 422
    [fastapi_item], [package_item] = by_fastapi.json()["detail"], by_package.json()["detail"]
    assert fastapi_item["loc"] == package_item["loc"] == ["body", "risk_score"]
    assert fastapi_item["type"] == "int_parsing" and package_item["type"] == "invalid_data"
    assert set(package_item) == {"type", "loc", "msg"} <= set(fastapi_item)


def test_the_error_responses_are_in_the_openapi_schema(app: FastAPI) -> None:
    schema = app.openapi()
    for path in ("/raise/{kind}", "/scored", "/users/{email}", "/users/{email}/then-fail"):
        [operation] = schema["paths"][path].values()
        responses = operation["responses"]
        for status in ("404", "409", "503"):
            content = responses[status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
        for status in ("409", "503"):
            assert responses[status]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
        assert responses["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/HTTPValidationError"
        }
    components = schema["components"]["schemas"]
    assert components["ErrorResponse"]["required"] == ["detail", "error"]
    assert components["ValidationError"] == validation_error_definition  # FastAPI's, untouched


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
