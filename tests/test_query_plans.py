"""The hot queries use indexes: on a seeded, analysed database, the exact statements the
repositories send (captured on both paths: SQLAlchemy's engine events and the fast path straight
on asyncpg) are EXPLAINed with their own parameters, and no
plan reads users, their metrics, reports, chat sessions and messages or a report's child tables
with a Seq Scan, nor scans their indexes without an index condition.

The seed makes one user per 20 reports: at 20k rows, a 3-page users table that the planner
rightly reads whole. Real deployments have far more users than that, so users (and their
metrics) are topped up to a realistic count before ANALYZE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db import (
    AnalysisRepository,
    ChatRepository,
    DatabaseConnection,
    ReportRepository,
    UserRepository,
    init_db,
)
from exportsathi_db.seed import seed

WATCHED = {
    "users",
    "user_metrics",
    "reports",
    "chat_sessions",
    "chat_messages",
    "certification_progress",
    "generated_documents",
    "action_plan_progress",
}
EXTRA_USERS = (
    """INSERT INTO users (email, password_hash, business_type, company_size)
    SELECT 'signup' || g || '@plans.example.in', '$2b$12$' || repeat('x', 53), 'Merchant', 'Micro'
    FROM generate_series(1, 2000) AS g""",
    "INSERT INTO user_metrics (user_id) SELECT id FROM users WHERE email LIKE 'signup%'",
)
Captured = list[tuple[str, tuple[Any, ...]]]
_BOOKKEEPING = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", ";", "SELECT 1")


@contextmanager
def _capturing(db: DatabaseConnection) -> Iterator[Captured]:
    """Every statement sent inside the block with its parameters, whichever path sent it."""
    captured: Captured = []

    def record(statement: str, params: Any) -> None:
        if statement.strip() and not statement.lstrip().upper().startswith(_BOOKKEEPING):
            captured.append((statement, tuple(params or ())))

    def on_execute(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        record(statement, params)

    def sending(method: Any) -> Any:
        async def wrapper(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
            record(query, args)
            return await method(self, query, *args, **kw)

        return wrapper

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("execute", "fetch", "fetchrow", "fetchval"):
            patch.setattr(asyncpg.Connection, name, sending(getattr(asyncpg.Connection, name)))
        try:
            yield captured
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)


async def _hot_queries(db: DatabaseConnection, ids: dict[str, Any]) -> dict[str, int]:
    """Run every hot read once, each in its own session (no identity-map hits); returns the
    number of statements each sent, by name, in order."""
    user, report, chat, owner = ids["user"], ids["report"], ids["chat"], ids["chat_owner"]
    report_owner, cursor = ids["report_owner"], ids["cursor"]
    calls: dict[str, Callable[[AsyncSession], Awaitable[Any]]] = {
        "get_by_email": lambda s: UserRepository(s).get_by_email(ids["email"].upper()),
        "user get": lambda s: UserRepository(s).get(user),
        "get_metrics": lambda s: AnalysisRepository(s).get_metrics(user),
        "list_for_user": lambda s: ReportRepository(s).list_for_user(user, limit=5),
        "list_for_user cursor page": lambda s: ReportRepository(s).list_for_user(
            user, limit=5, cursor=cursor
        ),
        "report get": lambda s: ReportRepository(s).get(report, user_id=report_owner),
        "get_full": lambda s: ReportRepository(s).get_full(report, user_id=report_owner),
        "history": lambda s: ChatRepository(s).history(chat, user_id=owner, limit=50),
    }
    sent: dict[str, int] = {}
    for name, call in calls.items():
        async with db.session_scope() as s:
            assert await call(s) is not None
        sent[name] = len(ids["captured"]) - sum(sent.values())
    return sent


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def plans(postgres_admin_url: URL) -> AsyncIterator[dict[str, list[tuple[str, Any]]]]:
    """Seed ~20k rows into a fresh database, ANALYZE, capture the hot statements, EXPLAIN them."""
    from exportsathi_db.testing import create_database, drop_database

    url = await create_database(postgres_admin_url, "exportsathi_plans")
    db = DatabaseConnection(url)
    try:
        await init_db(db)
        async with db.engine.begin() as conn:
            await seed(conn, rows=20_000, progress=False)
            for statement in EXTRA_USERS:
                await conn.execute(text(statement))
            await conn.execute(text("ANALYZE"))
        ids = await _pick_ids(db)
        with _capturing(db) as captured:
            ids["captured"] = captured
            sent = await _hot_queries(db, ids)
        result: dict[str, list[tuple[str, Any]]] = {}
        async with db.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            statements = iter(captured)
            for name, count in sent.items():
                result[name] = []
                for statement, params in (next(statements) for _ in range(count)):
                    plan = await raw.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *params)
                    plan = json.loads(plan) if isinstance(plan, str) else plan
                    result[name].append((statement, plan))
        yield result
    finally:
        await db.dispose()
        await drop_database(url)


async def _pick_ids(db: DatabaseConnection) -> dict[str, Any]:
    """A seeded user with reports, a report with children, a chat session with messages."""
    query = """
        SELECT u.id, u.email,
            (SELECT report_id FROM certification_progress ORDER BY id LIMIT 1),
            (SELECT session_id FROM chat_messages ORDER BY id LIMIT 1)
        FROM users u WHERE EXISTS (SELECT FROM reports r WHERE r.user_id = u.id)
        ORDER BY u.id LIMIT 1
    """
    async with db.session_scope() as s:
        user, email, report, chat = (await s.execute(text(query))).one()
        owner = "SELECT user_id FROM {} WHERE id = :id"
        report_owner = await s.scalar(text(owner.format("reports")), {"id": report})
        chat_owner = await s.scalar(text(owner.format("chat_sessions")), {"id": chat})
        first = await ReportRepository(s).list_for_user(user, limit=5)
    assert first.next_cursor is not None
    cursor = first.next_cursor
    return dict(user=user, email=email, report=report, report_owner=report_owner, chat=chat,
                chat_owner=chat_owner, cursor=cursor)  # fmt: skip


def _nodes(plan: Any) -> Iterator[dict[str, Any]]:
    if isinstance(plan, list):
        for item in plan:
            yield from _nodes(item)
    elif isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan
        for key in ("Plan", "Plans"):
            if key in plan:
                yield from _nodes(plan[key])


MAX_STATEMENTS = {"get_full": 4}  # the report and its three kinds of children


HOT = ["get_by_email", "user get", "get_metrics", "list_for_user", "list_for_user cursor page",
       "report get", "get_full", "history"]  # fmt: skip


@pytest.mark.parametrize("name", HOT)
async def test_hot_query_uses_indexes(plans: dict[str, list[tuple[str, Any]]], name: str) -> None:
    statements = plans[name]
    assert 1 <= len(statements) <= MAX_STATEMENTS.get(name, 1), statements
    for statement, plan in statements:
        scans = [(n["Node Type"], n.get("Relation Name")) for n in _nodes(plan)]
        seq = [table for node, table in scans if node == "Seq Scan" and table in WATCHED]
        assert not seq, f"Seq Scan on {seq} in:\n{statement}\nplan: {json.dumps(plan, indent=1)}"
        assert any("Index" in node for node, _ in scans), (statement, scans)
        unbounded = [
            n["Index Name"]
            for n in _nodes(plan)
            if "Index Name" in n and "Index Cond" not in n and n.get("Relation Name") in WATCHED
        ]
        assert not unbounded, f"whole-index scan of {unbounded} in:\n{statement}"
