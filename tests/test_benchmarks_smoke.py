"""The benchmark harness works: every scenario runs once per implementation (no timing), the
implementations agree on what they read and write, the database holds what they wrote, and
the raw asyncpg baseline keeps sending as many statements as the repositories do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import URL

from benchmarks.fixtures import (
    BULK_SCENARIOS,
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

BOOKKEEPING = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", ";", "SELECT 1")
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
    raw = AsyncpgScenarios(await create_pool(database_url, min_size=1, max_size=2))
    orm = OrmScenarios(create_engine(database_url))
    impls: list[Scenarios] = [RepoScenarios(db), RepoScenarios(db, read_scope=True), raw, orm]
    try:
        assert await _counts(db, fx.user_id, fx.bulk_session_id) == (2, 2, 21, 0, 0)
        for name in (*REQUEST_SCENARIOS, *BULK_SCENARIOS):
            results = {impl.name: await scenario_ops(impl, fx)[name](0) for impl in impls}
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
        # 2 fixture reports + 4 + 4 new ones, each counted once; 21 + 4 x 21 tasks;
        # 4 x 1,000 + 10 bulk messages; the login was recorded.
        assert await _counts(db, fx.user_id, fx.bulk_session_id) == (10, 10, 105, 4010, 1)
    finally:
        await raw.close()
        await orm.close()
        async with db.session_scope() as s:  # the run's database is shared: leave nothing
            await UserRepository(s).delete(fx.user_id)
    assert await _counts(db, fx.user_id, fx.bulk_session_id) == (0, 0, 0, 0, 0)


@contextmanager
def _statements(db: DatabaseConnection) -> Iterator[list[str]]:
    """Statements sent inside the block on any path (SQLAlchemy, the repositories' fast path
    on asyncpg, the raw baseline), leaving out transactions and the asyncpg pool's reset."""
    sent: list[str] = []

    def record(statement: str) -> None:
        if not statement.lstrip().upper().startswith(BOOKKEEPING) and "RESET ALL" not in statement:
            sent.append(statement)

    def sending(method: Any) -> Any:
        async def wrapper(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
            record(query)
            return await method(self, query, *args, **kw)

        return wrapper

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        record(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", on_execute)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
            patch.setattr(asyncpg.Connection, name, sending(getattr(asyncpg.Connection, name)))
        try:
            yield sent
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", on_execute)


async def test_raw_baseline_sends_as_many_statements_as_the_repositories(
    db: DatabaseConnection, database_url: URL
) -> None:
    """When a repository method gains or sheds a round trip, benchmarks/asyncpg_sql.py must
    follow, or the comparison stops being like for like."""
    fx = await make_fixtures(db, seeded=False)
    raw = AsyncpgScenarios(await create_pool(database_url, min_size=1, max_size=1))
    counts: dict[str, dict[str, int]] = {"repo": {}, "asyncpg": {}}
    try:
        for impl in (RepoScenarios(db), raw):
            for name in (*REQUEST_SCENARIOS, *BULK_SCENARIOS):
                with _statements(db) as sent:
                    await scenario_ops(impl, fx)[name](0)
                counts[impl.name][name] = len(sent)
    finally:
        await raw.close()
        async with db.session_scope() as s:
            await UserRepository(s).delete(fx.user_id)
    assert counts["asyncpg"] == counts["repo"]
    assert counts["repo"]["chat_turn"] == 3  # the counting itself works: 2 inserts + history
