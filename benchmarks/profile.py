"""Where a unit of work's client time goes: `python -m benchmarks.profile [--calls N]
[--scenario NAME ...] [--top K]`.

For each scenario, on a fresh database seeded at 10^4 rows:

1. **Layers**: client CPU per operation of the same statements on successively thicker
   stacks, each timed interleaved with the others, so the difference between two adjacent
   layers is what that layer costs:
   - `asyncpg`: the raw baseline;
   - `SQLAlchemy pool + asyncpg transaction`: `AsyncEngine.raw_connection()` (the package's
     pool and its checkout/checkin guards), `BEGIN`/`COMMIT` and every statement on the
     asyncpg connection;
   - `AsyncConnection + driver`: `engine.connect()`, the first statement through
     `exec_driver_sql` (SQLAlchemy sends BEGIN), the rest to `driver_connection`, `commit()`;
   - `AsyncSession + driver`: the same in a bare `AsyncSession` (`commit()`, `close()`): the
     executor's recipe without the package's code;
   - `repo`: the package (`session_scope()`, the repositories, the read models), and
     `read_scope()` for the reading scenarios.
2. **Profile** (cProfile) of the repo scenario: self time grouped by where the code lives
   (SQLAlchemy's session, engine/asyncio adapter, pool, events; greenlet switches; this
   package; asyncpg; the event loop; json), and the top functions by self time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from benchmarks import asyncpg_sql as sql
from benchmarks import environment
from benchmarks.fixtures import REPORT_DATA, Fixtures, make_fixtures, scenario_ops
from benchmarks.scenarios_asyncpg import AsyncpgScenarios, connect_kwargs, create_pool
from benchmarks.scenarios_repo import ANSWER, QUESTION, opened
from benchmarks.timing import interleaved, summary
from exportsathi_db import DatabaseConnection
from exportsathi_db.models import new_id
from exportsathi_db.repositories import executor

SCENARIOS = ("login", "dashboard", "new_report", "report_page", "chat_turn")

# (category, substring of the code's file name or the builtin's name), first match wins.
CATEGORIES = (
    ("greenlet switches (SQLAlchemy's await_only / greenlet_spawn)", "greenlet"),
    ("greenlet switches (SQLAlchemy's await_only / greenlet_spawn)", "_concurrency_py3k"),
    ("SQLAlchemy ORM session (sessionmaker, Session, transaction state)", "sqlalchemy/orm/"),
    ("SQLAlchemy asyncio layer (AsyncSession, AsyncConnection)", "sqlalchemy/ext/asyncio/"),
    ("SQLAlchemy pool (checkout, checkin, reset)", "sqlalchemy/pool/"),
    ("SQLAlchemy engine + asyncpg adapter", "sqlalchemy/engine/"),
    ("SQLAlchemy engine + asyncpg adapter", "sqlalchemy/dialects/"),
    ("SQLAlchemy events, utilities", "sqlalchemy/"),
    ("exportsathi_db (unit of work, executor, repositories, views)", "exportsathi_db/"),
    ("asyncpg (Python and Cython)", "asyncpg"),
    ("json", "json"),
    ("event loop, sockets (asyncio, selectors)", "asyncio"),
    ("event loop, sockets (asyncio, selectors)", "selectors"),
    ("event loop, sockets (asyncio, selectors)", "socket"),
    ("benchmark harness", "benchmarks/"),
)


class Layer:
    """The scenarios' statements (the repositories' SQL) on some stack: `_unit` runs them in
    one transaction and returns each statement's rows. Values only, no read models."""

    name = "layer"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.factory = async_sessionmaker(engine, expire_on_commit=False)

    async def _unit(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        raise NotImplementedError

    async def login(self, email: str) -> Any:
        (rows,) = await self._unit([(sql.LOGIN, (email,))])
        return rows[0][0]

    async def dashboard(self, user_id: uuid.UUID) -> Any:
        rows = await self._unit(
            [
                (sql.GET_USER, (user_id,)),
                (sql.GET_METRICS, (user_id,)),
                (sql.LIST_REPORTS, (user_id, 21)),
            ]
        )
        return rows[0][0][0], rows[1][0][sql.METRICS_REPORTS_GENERATED], len(rows[2][:20])

    async def new_report(self, user_id: uuid.UUID) -> Any:
        given = {
            "product_name": "Organic turmeric powder",
            "destination_country": "United States",
            "hs_code": "0910.30",
            "risk_score": 35,
            "report_data": _json(REPORT_DATA),
            "status": "completed",
        }
        args = (new_id(), user_id, new_id(), *(given.get(n) for n in sql.REPORT_SETTABLE))
        (rows,) = await self._unit([(sql.CREATE_REPORT, args)])
        return rows[0][1], rows[0][18]

    async def report_page(self, report_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        (rows,) = await self._unit([(sql.GET_FULL, (report_id, user_id))])
        return len(rows[0][-3]), len(rows[0][-2]), len(rows[0][-1])

    async def chat_turn(self, session_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        owned = (session_id, user_id)
        rows = await self._unit(
            [
                (sql.ADD_MESSAGE, (*owned, new_id(), "user", QUESTION, None)),
                (sql.ADD_MESSAGE, (*owned, new_id(), "assistant", ANSWER, "[]")),
                (sql.HISTORY, (*owned, 50)),
            ]
        )
        return len(rows[2]), rows[2][0][4]


class BareSession(Layer):
    """A bare AsyncSession, the executor's recipe by hand (no package code): the first
    statement through `exec_driver_sql` (SQLAlchemy sends BEGIN), the others straight to the
    driver, then `commit()` and `close()`."""

    name = "AsyncSession + driver"

    async def _unit(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        session = self.factory()
        try:
            conn = await session.connection()
            first, args = statements[0]
            rows: list[Any] = [(await conn.exec_driver_sql(first, args)).all()]
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            for statement, args in statements[1:]:
                rows.append(await driver.fetch(statement, *args))
            await session.commit()
            return rows
        finally:
            await session.close()


class BareConnection(Layer):
    """The same recipe on an AsyncConnection (`engine.connect()`, `commit()`): no Session."""

    name = "AsyncConnection + driver"

    async def _unit(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        async with self.engine.connect() as conn:
            first, args = statements[0]
            rows: list[Any] = [(await conn.exec_driver_sql(first, args)).all()]
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            for statement, args in statements[1:]:
                rows.append(await driver.fetch(statement, *args))
            await conn.commit()
        return rows


class PoolDriver(Layer):
    """SQLAlchemy's pool only (`AsyncEngine.raw_connection()`, with the package's checkout and
    checkin guards), the transaction and every statement on the asyncpg connection."""

    name = "SQLAlchemy pool + asyncpg transaction"

    async def _unit(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        pooled = await self.engine.raw_connection()
        try:
            driver = pooled.driver_connection
            assert driver is not None
            async with driver.transaction():
                return [await driver.fetch(statement, *args) for statement, args in statements]
        finally:
            pooled.close()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def category(key: tuple[str, int, str]) -> str:
    filename, _, function = key
    where = f"{filename} {function}"
    return next((name for name, marker in CATEGORIES if marker in where), "other (builtins)")


async def _layers(
    ops: dict[str, Callable[[int], Awaitable[Any]]], calls: int
) -> dict[str, dict[str, float]]:
    times = await interleaved(ops, iterations=calls, batch=10, warmup=200)
    return {name: summary(*t) for name, t in times.items()}


async def _profile(op: Callable[[int], Awaitable[Any]], calls: int) -> pstats.Stats:
    for i in range(200):
        await op(i)
    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting is not cost
    profiler.enable()
    for i in range(calls):
        await op(200 + i)
    profiler.disable()
    return pstats.Stats(profiler)


def _report(name: str, stats: pstats.Stats, calls: int, top: int) -> None:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_category: dict[str, float] = defaultdict(float)
    total = 0.0
    for key, (_cc, _nc, tottime, _ct, _callers) in raw.items():
        by_category[category(key)] += tottime
        total += tottime
    print(f"\n### cProfile of repo {name}: {calls} calls, {total * 1e6 / calls:.0f} us/op profiled")
    print("(CPU time; cProfile's own overhead inflates every call: read the shares)\n")
    print("| where | us/op | share |\n|---|---|---|")
    for cat, seconds in sorted(by_category.items(), key=lambda kv: -kv[1]):
        print(f"| {cat} | {seconds * 1e6 / calls:.0f} | {seconds / total:.0%} |")
    print(f"\nTop {top} functions by self time:\n")
    print("| function | calls/op | self us/op | share |\n|---|---|---|---|")
    ranked = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    for (filename, line, function), (_cc, nc, tottime, _ct, _callers) in ranked:
        short = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        print(
            f"| `{short}:{line} {function}` | {nc / calls:.1f} | {tottime * 1e6 / calls:.1f} "
            f"| {tottime / total:.1%} |"
        )


async def main_async(url: URL, scenarios: list[str], calls: int, top: int) -> None:
    async with opened(url) as (repo, read_scope):
        fx: Fixtures = await make_fixtures(repo.db)
        raw = AsyncpgScenarios(await create_pool(url, min_size=1, max_size=2))
        engine = repo.db.engine
        layers_ = [PoolDriver(engine), BareConnection(engine), BareSession(engine)]
        try:
            for name in scenarios:
                ops = {raw.name: scenario_ops(raw, fx)[name]}
                ops |= {layer.name: _layer_op(layer, name, fx) for layer in layers_}
                ops[repo.name] = scenario_ops(repo, fx)[name]
                if name in ("dashboard", "report_page"):
                    ops["repo, read_scope()"] = scenario_ops(read_scope, fx)[name]
                layers = await _layers(ops, calls)
                print(f"\n## {name}\n")
                print("| layer | median us | CPU us/op | CPU vs asyncpg |\n|---|---|---|---|")
                base = layers["asyncpg"]["cpu_ms_per_op"]
                for layer, s in layers.items():
                    print(
                        f"| {layer} | {s['median_ms'] * 1000:.0f} | "
                        f"{s['cpu_ms_per_op'] * 1000:.0f} | {s['cpu_ms_per_op'] / base:.2f}x |"
                    )
                _report(name, await _profile(ops["repo"], calls), calls, top)
        finally:
            await raw.close()


async def micro(db: DatabaseConnection, calls: int) -> None:
    """Per statement: the executor against the same statement on the driver, inside one open
    transaction; and the pieces the executor runs for each statement. Per unit: how a unit of
    work ends (`session_scope()`'s COMMIT, `read_scope()`'s ROLLBACK in a shielded task, a
    plain ROLLBACK)."""
    statement = "SELECT $1::int"
    async with db.session_scope() as s:
        await executor.fetchrow(s, statement, 0)  # BEGIN, through SQLAlchemy
        conn = await s.connection()
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        ops: dict[str, Callable[[int], Awaitable[Any]]] = {
            "asyncpg fetchrow": lambda i: driver.fetchrow(statement, i),
            "executor.fetchrow": lambda i: executor.fetchrow(s, statement, i),
            "  of which session.connection()": lambda _i: s.connection(),
            "  of which get_raw_connection()": lambda _i: conn.get_raw_connection(),
        }
        per_statement = await interleaved(ops, iterations=calls, batch=10, warmup=100)
    print("\n## Per statement, inside an open transaction\n")
    print("| call | CPU us/call |\n|---|---|")
    for name, (_walls, cpus) in per_statement.items():
        print(f"| {name} | {sum(cpus) * 1e6 / len(cpus):.1f} |")

    # asyncpg's command_timeout (the package sets DB_COMMAND_TIMEOUT): a timer per statement
    kwargs = connect_kwargs(db.engine.url)
    plain = await asyncpg.connect(**kwargs)
    timed = await asyncpg.connect(**kwargs, command_timeout=db.settings.db_command_timeout)
    try:
        by_conn = {"asyncpg, no command_timeout": plain, "asyncpg, command_timeout": timed}
        timer_ops: dict[str, Callable[[int], Awaitable[Any]]] = {
            name: (lambda i, c=c: c.fetchrow(statement, i)) for name, c in by_conn.items()
        }
        with_timer = await interleaved(timer_ops, iterations=calls, batch=10, warmup=100)
    finally:
        await plain.close()
        await timed.close()
    for name, (_walls, cpus) in with_timer.items():
        print(f"| {name} fetchrow | {sum(cpus) * 1e6 / len(cpus):.1f} |")

    async def ends_with_commit(i: int) -> None:
        async with db.session_scope() as s:
            await executor.fetchrow(s, statement, i)

    async def ends_in_read_scope(i: int) -> None:
        async with db.read_scope() as s:
            await executor.fetchrow(s, statement, i)

    read_factory = async_sessionmaker(
        db.engine.execution_options(postgresql_readonly=True), expire_on_commit=False
    )

    async def ends_with_plain_rollback(i: int) -> None:
        session = read_factory()
        try:
            await executor.fetchrow(session, statement, i)
            await session.rollback()
        finally:
            await session.close()

    units = {
        "session_scope(): 1 statement, COMMIT": ends_with_commit,
        "read_scope(): 1 statement, ROLLBACK in a shielded task": ends_in_read_scope,
        "AsyncSession READ ONLY: 1 statement, rollback() inline": ends_with_plain_rollback,
    }
    per_unit = await interleaved(units, iterations=calls, batch=10, warmup=100)
    print("\n## How a unit of work ends (one statement each)\n")
    print("| unit | median us | CPU us/op |\n|---|---|---|")
    for name, (walls, cpus) in per_unit.items():
        s_ = summary(walls, cpus)
        print(f"| {name} | {s_['median_ms'] * 1000:.0f} | {s_['cpu_ms_per_op'] * 1000:.0f} |")


def _layer_op(layer: Layer, name: str, fx: Fixtures) -> Callable[[int], Awaitable[Any]]:
    users = fx.users
    return {
        "login": lambda i: layer.login(users[i % len(users)][1]),
        "dashboard": lambda i: layer.dashboard(users[i % len(users)][0]),
        "new_report": lambda i: layer.new_report(users[i % len(users)][0]),
        "report_page": lambda i: layer.report_page(fx.report_id, fx.user_id),
        "chat_turn": lambda i: layer.chat_turn(fx.chat_session_id, fx.user_id),
    }[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--micro", action="store_true", help="only the per-statement timings")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    with environment.server() as admin_url:

        async def go() -> None:
            url = await environment.fresh_database(admin_url, "exportsathi_bench_profile")
            try:
                await environment.seed_database(url, 10_000)
                if args.micro:
                    async with opened(url) as (repo, _):
                        await micro(repo.db, args.calls)
                else:
                    await main_async(url, args.scenario or list(SCENARIOS), args.calls, args.top)
            finally:
                await environment.drop_database(admin_url, url)

        asyncio.run(go())
    print(f"\n(done in {time.perf_counter() - began:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
