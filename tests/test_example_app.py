"""The README's example app, driven over HTTP against the real database."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import text

import exportsathi_db.dependencies
from examples.app import app
from exportsathi_db import DatabaseConnection, DbSession, UserRepository
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
    messages = (await client.get(f"/users/{user_id}/chats/{chat_id}/messages")).json()
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "Do I need APEDA registration?"


async def test_errors_map_to_http_statuses_and_leak_nothing(client: httpx.AsyncClient) -> None:
    body = _user()
    assert (await client.post("/users", json=body)).status_code == 201
    duplicate = await client.post("/users", json=body | {"email": body["email"].upper()})
    assert duplicate.status_code == 409
    bad = await client.post("/users", json=_user() | {"business_type": "Farmer"})
    assert bad.status_code == 422
    assert bad.json() == {
        "detail": [
            {
                "type": "invalid_data",
                "loc": ["body", "business_type"],
                "msg": "must be one of Manufacturing, SaaS, Merchant; got 'Farmer'",
            }
        ]
    }
    missing = await client.get(f"/users/{uuid.uuid4()}/reports/{uuid.uuid4()}")
    assert missing.status_code == 404
    owner = (await client.post("/users", json=_user())).json()["id"]
    stranger = (await client.post("/users", json=_user())).json()["id"]
    report = await client.post(
        f"/users/{owner}/reports",
        json={"product_name": "Jute bags", "destination_country": "Germany", "report_data": {}},
    )
    foreign = await client.get(f"/users/{stranger}/reports/{report.json()['id']}")
    assert foreign.status_code == 404


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
