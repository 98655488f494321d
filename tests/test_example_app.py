"""The README's example app, driven over HTTP against the real database."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import text

import exportsathi_db.dependencies
from examples.app import NewUser, app
from exportsathi_db import DatabaseConnection, DbSession, InvalidDataError, UserRepository
from exportsathi_db.validation import check_email, check_password_hash
from tests.factories import PASSWORD_HASH, unique


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    db: DatabaseConnection, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The app's `get_db` on the test database; every committed user is deleted afterwards."""
    monkeypatch.setattr(exportsathi_db.dependencies, "db_connection", db)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    async with db.session_scope() as session:
        await session.execute(text("DELETE FROM users WHERE email LIKE 'app-%'"))


def _user(email: str | None = None) -> dict[str, str]:
    return {
        "email": email or f"{unique('app')}@example.in",
        "password_hash": PASSWORD_HASH,
        "business_type": "Manufacturing",
        "company_size": "Micro",
    }


async def test_user_report_and_chat_round_trip(client: httpx.AsyncClient) -> None:
    created = await client.post("/users", json=_user())
    assert created.status_code == 201
    assert set(created.json()) == {"id", "email"}  # never the password hash
    user_id = created.json()["id"]
    report = await client.post(
        f"/users/{user_id}/reports",
        json={
            "product_name": "Basmati rice",
            "destination_country": "Saudi Arabia",
            "report_data": {"score": 72},
            "hs_code": "1006.30",
        },
    )
    assert report.status_code == 201
    assert report.json() == {"id": report.json()["id"], "status": "completed"}
    page = await client.get(f"/users/{user_id}/reports/{report.json()['id']}")
    assert page.json() == {
        "product_name": "Basmati rice",
        "hs_code": "1006.30",
        "certifications": [],
        "documents": [],
        "tasks": 0,
    }
    chat = await client.post(f"/users/{user_id}/chats", params={"report_id": report.json()["id"]})
    chat_id = chat.json()["id"]
    asked = await client.post(
        f"/users/{user_id}/chats/{chat_id}/messages",
        json={"content": "Do I need APEDA registration?"},
    )
    assert asked.status_code == 201
    answer = asked.json()["answer"]
    messages = (await client.get(f"/users/{user_id}/chats/{chat_id}/messages")).json()
    assert messages == [
        {"role": "user", "content": "Do I need APEDA registration?"},
        {"role": "assistant", "content": answer},
    ]


async def test_errors_map_to_http_statuses_and_leak_nothing(client: httpx.AsyncClient) -> None:
    body = _user()
    assert (await client.post("/users", json=body)).status_code == 201
    duplicate = await client.post("/users", json=body | {"email": body["email"].upper()})
    assert duplicate.status_code == 409
    assert duplicate.json() == {
        "detail": "email: an account with this email already exists",
        "error": "AlreadyExistsError",
    }
    missing_user, missing_report = uuid.uuid4(), uuid.uuid4()
    missing = await client.get(f"/users/{missing_user}/reports/{missing_report}")
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": f"report {missing_report} not found",
        "error": "NotFoundError",
    }
    owner = (await client.post("/users", json=_user())).json()["id"]
    stranger = (await client.post("/users", json=_user())).json()["id"]
    report = await client.post(
        f"/users/{owner}/reports",
        json={"product_name": "Jute bags", "destination_country": "Germany", "report_data": {}},
    )
    foreign = await client.get(f"/users/{stranger}/reports/{report.json()['id']}")
    assert foreign.status_code == 404
    assert foreign.json()["error"] == "NotFoundError"


async def test_422_from_the_request_model_and_from_the_package_have_one_shape(
    client: httpx.AsyncClient,
) -> None:
    """FastAPI refuses what the request model describes (an unknown business type); the
    package refuses what only it checks (NUL characters): one body shape."""
    farmer = await client.post("/users", json=_user() | {"business_type": "Farmer"})
    assert farmer.status_code == 422
    [item] = farmer.json()["detail"]
    assert (item["type"], item["loc"]) == ("enum", ["body", "business_type"])
    nul = await client.post("/users", json=_user() | {"company_name": "Kochi\x00Spices"})
    assert nul.status_code == 422
    assert nul.json() == {
        "detail": [
            {
                "type": "invalid_data",
                "loc": ["body", "company_name"],
                "msg": "must not contain NUL characters",
            }
        ]
    }
    owner = (await client.post("/users", json=_user())).json()["id"]
    report = {"product_name": "Cumin", "destination_country": "Oman"}
    nul_in_json = await client.post(
        f"/users/{owner}/reports", json=report | {"report_data": {"notes": ["ok", "a\x00b"]}}
    )
    assert nul_in_json.status_code == 422
    assert nul_in_json.json() == {
        "detail": [
            {
                "type": "invalid_data",
                "loc": ["body", "report_data"],
                "msg": "at ['notes'][1]: must not contain NUL characters",
            }
        ]
    }


def test_the_openapi_schema_documents_inputs_outputs_and_errors() -> None:
    """What a schema-driven client needs: enums, formats and lengths of the inputs, typed
    outputs without the password hash, and every error status the handlers answer with."""
    schema = app.openapi()
    models = schema["components"]["schemas"]
    new_user = models["NewUser"]["properties"]
    assert models[new_user["business_type"]["$ref"].rsplit("/", 1)[1]]["enum"] == [
        "Manufacturing",
        "SaaS",
        "Merchant",
    ]
    assert models[new_user["company_size"]["$ref"].rsplit("/", 1)[1]]["enum"] == [
        "Micro",
        "Small",
        "Medium",
    ]
    assert re.fullmatch(new_user["password_hash"]["pattern"], PASSWORD_HASH)
    assert not re.fullmatch(new_user["password_hash"]["pattern"], "hunter2-a-plain-password")
    assert new_user["password_hash"]["maxLength"] == new_user["email"]["maxLength"] == 255
    assert re.fullmatch(new_user["email"]["pattern"], "meera@kochi-spices.in")
    new_report = models["NewReport"]["properties"]
    assert new_report["destination_country"]["maxLength"] == 100
    assert "password_hash" not in json.dumps(
        {name: model for name, model in models.items() if name != "NewUser"}
    )
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert len(operations) == 6
    for operation in operations:
        responses = operation["responses"]
        assert {"404", "409", "422", "503"} <= set(responses), operation["operationId"]
        [success] = [status for status in responses if status.startswith("2")]
        assert "$ref" in json.dumps(responses[success]), operation["operationId"]


def _accepts(check: Callable[[str, Any], Any], value: str) -> bool:
    try:
        check("field", value)
    except InvalidDataError:
        return False
    return True


def _pydantic_accepts(field: str, value: str) -> bool:  # Rust's regex, not Python's
    body = _user() | {field: value}
    try:
        NewUser.model_validate(body)
    except ValidationError:
        return False
    return True


WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()] + ["\ufeff"]


@pytest.mark.parametrize(
    ("field", "check", "valid", "variants"),
    [
        (
            "password_hash",
            check_password_hash,
            [
                PASSWORD_HASH,
                "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "pbkdf2_sha256$600000$salt$" + "A" * 44,
                "pbkdf2:sha256:600000$salt$" + "0" * 64,
                "$6$rounds=5000$salt$" + "a" * 86,
                "$scrypt$ln=16,r=8,p=1$c2FsdA$aGFzaA",
            ],
            ["hunter2", "$2b$12$short", PASSWORD_HASH + "x", "", "$2b$1\u0663$" + "a" * 53]
            + [f"pbkdf2_sha256$600000$salt$A{c}" + "A" * 44 for c in [*WHITESPACE, "\x00"]],
        ),
        (
            "email",
            check_email,
            ["meera@kochi-spices.in", "a.b+c@d.e.f", "ñandú@correo.es"],
            ["meera", "a@b", "a@@b.c", ""] + [f"meera{c}@kochi.in" for c in WHITESPACE],
        ),
    ],
)
def test_the_request_patterns_are_the_packages_rules_in_every_engine(
    field: str, check: Callable[[str, Any], Any], valid: list[str], variants: list[str]
) -> None:
    """The request model's patterns are validation.py's rules (digits and whitespace spelled
    out, so that Python's re, Pydantic's Rust regex and a client's ECMAScript agree): what
    they accept, the package accepts; the package's own examples pass everywhere."""
    pattern = NewUser.model_json_schema()["properties"][field]["pattern"]
    for value in valid + variants:
        in_python = bool(re.search(pattern, value))
        assert in_python == _pydantic_accepts(field, value), repr(value)
        assert not in_python or _accepts(check, value), repr(value)
        assert in_python or value not in valid, repr(value)


def _failing_app() -> FastAPI:
    failing = FastAPI()

    @failing.post("/users-then-fail")
    async def create_then_fail(email: str, session: DbSession) -> None:
        await UserRepository(session).create(**_user(email))
        raise RuntimeError("the handler failed after writing")

    @failing.post("/slow")
    async def slow(email: str, session: DbSession) -> None:
        await UserRepository(session).create(**_user(email))
        await session.execute(text("SELECT pg_sleep(0.2)"))

    return failing


async def test_a_handler_that_raises_after_writing_leaves_nothing(
    db: DatabaseConnection, client: httpx.AsyncClient
) -> None:
    transport = httpx.ASGITransport(app=_failing_app(), raise_app_exceptions=False)
    email = f"{unique('app')}@example.in"
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.post("/users-then-fail", params={"email": email})
    assert response.status_code == 500
    async with db.session_scope() as session:
        assert await UserRepository(session).get_by_email(email) is None


async def test_500_requests_some_failing_some_cancelled_leave_no_connection_behind(
    db: DatabaseConnection, client: httpx.AsyncClient
) -> None:
    failing = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_failing_app(), raise_app_exceptions=False),
        base_url="http://t",
    )
    rng = random.Random(7)
    gate = asyncio.Semaphore(25)  # the pool's 10 + 20 overflow, a little under
    cancelled: list[str] = []

    async def one(i: int) -> str:
        async with gate:
            kind = rng.choice(["ok", "ok", "duplicate", "fail", "cancel"])
            email = f"app-{i}-{uuid.uuid4().hex[:6]}@example.in"
            if kind == "ok":
                return str((await client.post("/users", json=_user(email))).status_code)
            if kind == "duplicate":
                await client.post("/users", json=_user(email))
                return str((await client.post("/users", json=_user(email.upper()))).status_code)
            if kind == "fail":
                return str(
                    (await failing.post("/users-then-fail", params={"email": email})).status_code
                )
            try:
                async with asyncio.timeout(0.05):  # cancelled mid-request, inside pg_sleep
                    await failing.post("/slow", params={"email": email})
            except TimeoutError:
                cancelled.append(email)
                return "cancelled"
            return "finished"

    outcomes = await asyncio.gather(*(one(i) for i in range(500)))
    await failing.aclose()
    assert {"201", "409", "500", "cancelled"} <= set(outcomes)
    assert db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with db.session_scope() as session:
        stuck = await session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        )
        assert stuck.scalar_one() == 0
        # A request cancelled mid-unit-of-work wrote nothing (this query used to compare
        # each user with itself, so it could never fail).
        cancelled_writes = await session.execute(
            text("SELECT count(*) FROM users WHERE email = ANY(:emails)"), {"emails": cancelled}
        )
        assert cancelled_writes.scalar_one() == 0
