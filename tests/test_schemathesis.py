"""Schemathesis against the example app on the test database: requests generated from the
app's own OpenAPI schema reach every operation with valid data, never get a 5xx, and every
response is one the schema documents, in the documented shape; afterwards no connection is
checked out of the pool and none is left in a transaction.

Each request is a real unit of work on the `db` fixture (committed or rolled back, as in
production; not `override_get_db`, whose one shared session would bypass the pool this test
checks). Hypothesis runs in a worker thread and hands each request to the test's event loop,
the one `db`'s engine belongs to, where httpx's ASGI transport calls the app.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import URL

import exportsathi_db.dependencies
from examples.app import app
from exportsathi_db import DatabaseConnection
from tests.factories import PASSWORD_HASH, unique
from tests.helpers import in_use
from tests.reliability.support import app_backends

schemathesis = pytest.importorskip(
    "schemathesis",
    reason="schemathesis is not installed (pip install schemathesis): "
    "the schema-driven run against the example app is skipped",
)
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# The budget: examples per operation. Positive cases follow the schema; negative ones break
# it on purpose and must be refused with a 4xx. About 720 requests, 30-40 s.
EXAMPLES = {GenerationMode.POSITIVE: 80, GenerationMode.NEGATIVE: 40}
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CHECKS = {
    GenerationMode.POSITIVE: CONFORMANCE,
    GenerationMode.NEGATIVE: [*CONFORMANCE, negative_data_rejection],
}
BASE_URL = "http://test"


@pytest_asyncio.fixture(loop_scope="session")
async def http(
    db: DatabaseConnection, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The example app with `get_db` and `get_read_db` on the test database; the users the
    run creates (and so everything they own) are deleted afterwards."""
    monkeypatch.setattr(exportsathi_db.dependencies, "db_connection", db)
    async with db.session_scope() as session:
        started = (await session.execute(text("SELECT now()"))).scalar_one()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client
    async with db.session_scope() as session:
        await session.execute(text("DELETE FROM users WHERE created_at >= :t"), {"t": started})


async def _seed(http: httpx.AsyncClient) -> dict[str, str]:
    """A user with a report and a chat about it: the ids a valid request names."""
    user = await http.post(
        "/users",
        json={
            "email": f"{unique('schemathesis')}@example.in",
            "password_hash": PASSWORD_HASH,
            "business_type": "Merchant",
            "company_size": "Micro",
        },
    )
    user_id = user.json()["id"]
    report = await http.post(
        f"/users/{user_id}/reports",
        json={"product_name": "Cardamom", "destination_country": "Kuwait", "report_data": {}},
    )
    chat = await http.post(f"/users/{user_id}/chats", params={"report_id": report.json()["id"]})
    assert (user.status_code, report.status_code, chat.status_code) == (201, 201, 201)
    return {"user_id": user_id, "report_id": report.json()["id"], "chat_id": chat.json()["id"]}


def _cases(operation: Any, mode: GenerationMode, seeded: dict[str, str]) -> Any:
    """Generated cases; in positive mode also cases naming the seeded rows (generated ids
    are unknown ones: 404), and for a new chat, the seeded report too."""
    strategies = [operation.as_strategy(generation_mode=mode)]
    names = {parameter.name for parameter in operation.path_parameters}
    if names and mode is GenerationMode.POSITIVE:
        ids = {name: value for name, value in seeded.items() if name in names}
        strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=ids))
        if any(parameter.name == "report_id" for parameter in operation.query):
            query = {"report_id": seeded["report_id"]}
            strategies.append(
                operation.as_strategy(generation_mode=mode, path_parameters=ids, query=query)
            )
    return st.one_of(*strategies)


class Run:
    """Statuses per operation, and every failed check with a curl line to replay it."""

    def __init__(self, send: Callable[[dict[str, Any]], httpx.Response]) -> None:
        self.send = send
        self.statuses: dict[str, collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )
        self.failures: list[str] = []

    def operation(self, operation: Any, mode: GenerationMode, seeded: dict[str, str]) -> None:
        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # rows change, so a replay is no replay
            suppress_health_check=list(HealthCheck),
        )
        @given(case=_cases(operation, mode, seeded))
        def one(case: Any) -> None:
            response = self.send(case.as_transport_kwargs(base_url=BASE_URL))
            self.statuses[f"{case.method} {case.path}"][response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS[mode])
            except (AssertionError, FailureGroup) as failed:
                for failure in getattr(failed, "exceptions", [failed]):
                    self.failures.append(f"{case.as_curl_command(base_url=BASE_URL)}\n{failure}")

        one()

    def all(self, schema: Any, seeded: dict[str, str]) -> None:
        for result in schema.get_all_operations():
            for mode in EXAMPLES:
                self.operation(result.ok(), mode, seeded)


async def test_schemathesis_finds_no_5xx_and_no_response_outside_the_schema(
    http: httpx.AsyncClient, db: DatabaseConnection, database_url: URL
) -> None:
    seeded = await _seed(http)
    schema = schemathesis.openapi.from_dict(app.openapi())
    loop = asyncio.get_running_loop()

    async def request(kwargs: dict[str, Any]) -> httpx.Response:
        return await http.request(
            kwargs["method"],
            kwargs["url"],
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            json=kwargs.get("json"),
            content=kwargs.get("data"),
        )

    def send(kwargs: dict[str, Any]) -> httpx.Response:  # in Hypothesis' thread
        return asyncio.run_coroutine_threadsafe(request(kwargs), loop).result(timeout=60)

    run = Run(send)
    started = time.monotonic()
    await asyncio.to_thread(run.all, schema, seeded)
    total = sum(sum(counts.values()) for counts in run.statuses.values())
    print(
        f"\nschemathesis {schemathesis.__version__}: {total} requests in "
        f"{time.monotonic() - started:.1f} s"
    )
    for operation, counts in sorted(run.statuses.items()):
        print(f"  {operation}: {dict(sorted(counts.items()))}")

    assert run.failures == [], f"{len(run.failures)} failed checks; the first:\n{run.failures[0]}"
    assert len(run.statuses) == sum(len(path) for path in app.openapi()["paths"].values()) == 6
    for operation, counts in run.statuses.items():
        assert any(200 <= status < 300 for status in counts), f"{operation}: no 2xx: {counts}"
        assert all(status < 500 for status in counts), f"{operation}: a 5xx: {counts}"
    assert in_use(db) == 0
    backends = await app_backends(database_url, db.settings.db_application_name)
    assert [b for b in backends if b["state"] != "idle"] == []
