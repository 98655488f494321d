"""The benchmark harness works: every scenario runs once per implementation (no timing), the
implementations agree on what they read and write, the database holds what they wrote, and
the raw asyncpg baseline keeps sending the same statements as the repositories do."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import URL

import exportsathi_db.dependencies
from benchmarks.fixtures import (
    BULK_SCENARIOS,
    OLD_LOGIN,
    PASSWORD_HASH,
    REQUEST_SCENARIOS,
    Scenarios,
    chat_messages,
    make_fixtures,
    mixed_op,
    scenario_ops,
)
from benchmarks.scenarios_asyncpg import AsyncpgScenarios, create_pool
from benchmarks.scenarios_orm import OrmScenarios, create_engine
from benchmarks.scenarios_repo import ANSWER, RepoScenarios
from exportsathi_db import DatabaseConnection, UserRepository

# asyncpg's once-per-connection type lookups (as tests/statements.py leaves them out)
TYPE_LOOKUP = ("typeinfo_tree", "set_config('jit'")
EXPECTED = {  # per scenario, what every implementation returns (the user id filled in below)
    "new_report": ("USER", "completed"),
    "report_page": (10, 5, 21),
    "chat_turn": (50, ANSWER),
    "save_action_plan": 21,
    "add_messages": 1000,
}


async def _counts(db: DatabaseConnection, user_id: object, bulk_session: object) -> tuple[int, ...]:
    query = """
        SELECT (SELECT count(*) FROM reports WHERE user_id = :u),
               (SELECT reports_generated FROM user_metrics WHERE user_id = :u),
               (SELECT count(*) FROM action_plan_progress WHERE user_id = :u),
               (SELECT count(*) FROM chat_messages WHERE session_id = :s),
               (SELECT count(*) FROM users WHERE id = :u AND last_login IS NOT NULL)
    """
    async with db.engine.connect() as conn:
        row = (await conn.execute(text(query), {"u": user_id, "s": bulk_session})).one()
    return tuple(int(value or 0) for value in row)


async def test_every_scenario_runs_on_every_implementation(
    db: DatabaseConnection, database_url: URL
) -> None:
    fx = await make_fixtures(db, seeded=False)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    raw = AsyncpgScenarios(pool)
    orm = OrmScenarios(create_engine(database_url))
    impls: list[Scenarios] = [
        RepoScenarios(db),
        RepoScenarios(db, read_scope=True),
        raw,
        AsyncpgScenarios(pool, read_only=True, owns_pool=False),
        orm,
    ]
    try:
        assert await _counts(db, fx.user_id, fx.bulk_session_id) == (2, 2, 21, 0, 0)
        for name in (*REQUEST_SCENARIOS, OLD_LOGIN, *BULK_SCENARIOS):
            ops = {impl.name: op for impl in impls if (op := scenario_ops(impl, fx).get(name))}
            assert len(ops) >= 2, name
            results = {key: await op(0) for key, op in ops.items()}
            assert len({repr(result) for result in results.values()}) == 1, (name, results)
            expected = EXPECTED.get(name)
            if isinstance(expected, tuple):
                expected = tuple(fx.user_id if v == "USER" else v for v in expected)
            assert expected is None or next(iter(results.values())) == expected, (name, results)
        copied = await raw.copy_messages(fx.bulk_session_id, fx.user_id, chat_messages(10))
        assert copied == 10
        for impl in impls:
            for i in range(5):  # scenarios 1-5 as the concurrency mix runs them
                await mixed_op(impl, fx)(i)
        # 2 fixture reports + 5 + 5 new ones, each counted once; 21 + 5 x 21 tasks;
        # 5 x 1,000 + 10 bulk messages; the login was recorded.
        assert await _counts(db, fx.user_id, fx.bulk_session_id) == (12, 12, 126, 5010, 1)
    finally:
        await raw.close()
        await orm.close()
        async with db.session_scope() as s:  # the run's database is shared: leave nothing
            await UserRepository(s).delete(fx.user_id)
    assert await _counts(db, fx.user_id, fx.bulk_session_id) == (0, 0, 0, 0, 0)


def _normal(statement: str) -> str:
    return " ".join(statement.split()).rstrip(";").upper()


class _Recorder:
    """Every statement sent while `recording()`: by the repositories (SQLAlchemy's
    `before_cursor_execute` for the first one of a transaction, asyncpg's query logger for
    the rest and for BEGIN/COMMIT/ROLLBACK) or by the raw baseline (the query logger added to
    its pool's connection), as tests/statements.py counts; asyncpg's once-per-connection
    type lookups left out."""

    def __init__(self, db: DatabaseConnection) -> None:
        self.engine = db.engine.sync_engine
        self.sent: list[str] | None = None
        self.drivers: set[Any] = set()

    def on_query(self, query: Any) -> None:
        if self.sent is not None and not any(m in query.query for m in TYPE_LOOKUP):
            self.sent.append(_normal(query.query))

    def on_execute(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.sent is not None:
            self.sent.append(_normal(statement))

    def on_checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver = dbapi_connection.driver_connection
        if driver not in self.drivers:
            driver.add_query_logger(self.on_query)
            self.drivers.add(driver)

    @asynccontextmanager
    async def recording(self) -> AsyncIterator[list[str]]:
        self.sent = sent = []
        try:
            yield sent
            await asyncio.sleep(0.01)  # asyncpg calls query loggers with `call_soon`
        finally:
            self.sent = None

    @contextmanager
    def listening(self) -> Iterator[None]:
        event.listen(self.engine, "before_cursor_execute", self.on_execute)
        event.listen(self.engine, "checkout", self.on_checkout)
        try:
            yield
        finally:
            event.remove(self.engine, "before_cursor_execute", self.on_execute)
            event.remove(self.engine, "checkout", self.on_checkout)
            for driver in self.drivers:
                driver.remove_query_logger(self.on_query)


async def test_raw_baseline_sends_the_same_statements_as_the_repositories(
    db: DatabaseConnection, database_url: URL
) -> None:
    """Like for like: per unit of work, raw asyncpg sends the very statements the repositories
    send, BEGIN, COMMIT and ROLLBACK included (`session_scope()` against `conn.transaction()`,
    `read_scope()` against BEGIN READ ONLY … ROLLBACK), and its pool no reset query. When a
    repository method gains or sheds a round trip, benchmarks/ must follow."""
    fx = await make_fixtures(db, seeded=False)
    pool = await create_pool(database_url, min_size=1, max_size=1)
    pairs = [
        (RepoScenarios(db), AsyncpgScenarios(pool, owns_pool=False)),
        (RepoScenarios(db, read_scope=True), AsyncpgScenarios(pool, read_only=True)),
    ]
    sent: dict[str, dict[str, list[str]]] = {}
    recorder = _Recorder(db)
    try:
        async with pool.acquire() as conn:  # the pool's one connection keeps its logger
            conn.add_query_logger(recorder.on_query)
        with recorder.listening():
            for repo, raw in pairs:
                for name in (*REQUEST_SCENARIOS, OLD_LOGIN, *BULK_SCENARIOS):
                    for impl in (repo, raw):
                        async with recorder.recording() as statements:
                            await scenario_ops(impl, fx)[name](0)
                        sent.setdefault(name, {})[impl.name] = sorted(statements)
    finally:
        await pool.close()
        async with db.session_scope() as s:
            await UserRepository(s).delete(fx.user_id)
    for name, by_impl in sent.items():
        assert by_impl["asyncpg"] == by_impl["repo"], name
        assert by_impl["asyncpg (read only)"] == by_impl["repo (read_scope)"], name
    # the counting itself works: BEGIN, 2 inserts + history, COMMIT
    assert len(sent["chat_turn"]["repo"]) == 5
    assert sent["login"]["repo"].count("BEGIN") == 1
    assert sent["login"]["repo"].count("COMMIT") == 1
    assert "BEGIN READ ONLY" in sent["report_page"]["repo (read_scope)"]
    assert "ROLLBACK" in sent["report_page"]["repo (read_scope)"]


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _answer(response: httpx.Response, email: str) -> tuple[int, Any]:
    """Status and body, ids and the app's own email masked; an error body by its class."""
    body = response.json()
    if response.status_code >= 400 and isinstance(body, dict) and "error" in body:
        return response.status_code, body["error"]
    return response.status_code, json.loads(_UUID.sub("<id>", response.text.replace(email, "<e>")))


async def test_the_raw_asyncpg_app_answers_like_the_example_app(
    db: DatabaseConnection, database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/app_asyncpg.py (the HTTP benchmark's baseline) answers every route of
    examples/app.py alike: statuses, bodies, errors."""
    from examples import app_asyncpg
    from examples.app import app as repo_app

    fx = await make_fixtures(db, seeded=False)
    monkeypatch.setattr(exportsathi_db.dependencies, "db_connection", db)
    pool = await app_asyncpg.create_pool(database_url.render_as_string(hide_password=False))
    monkeypatch.setattr(app_asyncpg, "pool", pool)
    answers: dict[str, list[tuple[int, Any]]] = {}
    try:
        for name, app in (("repo", repo_app), ("asyncpg", app_asyncpg.app)):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                answers[name] = await _conversation(http, fx, f"bench-app-{name}@example.in")
    finally:
        await pool.close()
        async with db.session_scope() as s:
            await s.execute(text("DELETE FROM users WHERE email LIKE 'bench-app-%'"))
            await UserRepository(s).delete(fx.user_id)
    assert answers["asyncpg"] == answers["repo"]
    assert [status for status, _ in answers["repo"]] == [
        201, 409, 201, 200, 404, 201, 201, 200, 200, 404, 404,
    ]  # fmt: skip


async def _conversation(http: httpx.AsyncClient, fx: Any, email: str) -> list[tuple[int, Any]]:
    """Every route of the example app, and its error answers."""
    user = {
        "email": email,
        "password_hash": PASSWORD_HASH,
        "business_type": "Manufacturing",
        "company_size": "Small",
    }
    report = {"product_name": "Turmeric", "destination_country": "US", "report_data": {"a": 1}}
    out = []
    created = await http.post("/users", json=user)
    uid = created.json()["id"]
    out.append(_answer(created, email))
    out.append(_answer(await http.post("/users", json=user), email))
    new_report = await http.post(f"/users/{uid}/reports", json=report)
    out.append(_answer(new_report, email))
    out.append(_answer(await http.get(f"/users/{fx.user_id}/reports/{fx.report_id}"), email))
    out.append(_answer(await http.get(f"/users/{uid}/reports/{fx.report_id}"), email))
    rid = new_report.json()["id"]
    chat = await http.post(f"/users/{uid}/chats", params={"report_id": rid})
    out.append(_answer(chat, email))
    asked = f"/users/{uid}/chats/{chat.json()['id']}/messages"
    out.append(_answer(await http.post(asked, json={"content": "IEC?"}), email))
    out.append(_answer(await http.get(asked), email))
    fx_chat = f"/users/{fx.user_id}/chats/{fx.chat_session_id}/messages"
    out.append(_answer(await http.get(fx_chat), email))
    out.append(_answer(await http.get(f"/users/{uid}/chats/{fx.chat_session_id}/messages"), email))
    out.append(_answer(await http.post(f"/users/{uuid.uuid4()}/reports", json=report), email))
    return out


async def test_the_observability_benchmark_runs_every_configuration(
    postgres_admin_url: URL,
) -> None:
    """`python -m benchmarks.observability`, a few calls: each configuration, each scenario,
    and tracing off again at the end."""
    from benchmarks import observability

    markdown = await observability.run(postgres_admin_url, iterations=2, batch=1, warmup=1)
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "x)" in line]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == list(REQUEST_SCENARIOS)
    assert all(row.count("x)") == 5 for row in rows)
    assert not hasattr(UserRepository.get, "__wrapped__")  # tracing is off again
