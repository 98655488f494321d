"""Failover of a Patroni cluster under a steady write load, as the application sees it.

The application connects with one multi-host URL (`?host=h:p1&host=h:p2&host=h:p3&
target_session_attrs=read-write`): asyncpg tries the nodes in turn and keeps the one that
accepts writes. Twenty tasks loop units of work that each insert a row with a client-made
id while (a) the leader's postmaster is killed (kill -9) and (b) a planned switchover runs;
(c) repeats (b) with units run by `db.run(..., idempotent=True)`, which must hide it entirely.

Measured and printed (also in the run's summary): seconds from the event until writes are
acknowledged again by the new leader, failed units by type, acknowledged units lost, units
that failed after recovery. Asserted: every failure is a typed, retryable error of this
package (`DatabaseUnavailableError`) or `CommitOutcomeUnknownError` for a commit in flight;
no acknowledged unit is lost; nothing fails once the new leader has acknowledged a write;
writes are back within 15 s of a crash and 10 s of a switchover (the goals are 5 s and 3 s,
and the summary says whether they were met).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import text

from exportsathi_db.config import Settings
from exportsathi_db.database import DatabaseConnection
from tests.ha.cluster import LOOPBACK, Member, PatroniCluster
from tests.ha.conftest import REPORTS, HaApp
from tests.ha.load import Figures, WriteLoad, Writer, write_in_scope, write_with_run

TASKS = 20
WARM_UP_SECONDS = 2.0
AFTER_RECOVERY_SECONDS = 3.0
CRASH_GOAL, CRASH_LIMIT = 5.0, 15.0
SWITCHOVER_GOAL, SWITCHOVER_LIMIT = 3.0, 10.0
# db.run's default backoff (DB_RETRY_BACKOFF_BASE 0.05 s, _CAP 2 s, full jitter) waits at most
# 0.35 s over its default 3 retries, well short of a ~2 s switchover; 15 retries wait
# 10.6 s on average (21 s at most) and less than 3 s about once in a million units.
RUN_RETRIES = 15


def app_settings() -> Settings:
    """Settings built here, not read from the environment; a pool for the load's tasks."""
    return Settings(
        database_url=None,
        database_read_url=None,
        db_application_name="exportsathi-ha",
        db_pool_size=TASKS,
        db_max_overflow=10,
        db_pgbouncer=False,
        db_echo=False,
    )


async def server_port(db: DatabaseConnection, *, read: bool = False) -> tuple[int, bool]:
    """(port, in recovery) of the server a unit of work of `db` lands on."""
    scope = db.read_scope() if read else db.session_scope()
    async with scope as session:
        row = (await session.execute(text("SELECT inet_server_port(), pg_is_in_recovery()"))).one()
    return int(row[0]), bool(row[1])


async def ids_on(app: HaApp, port: int) -> set[uuid.UUID]:
    """Every id in the table, read straight from the node on `port` (not via the package)."""
    conn = await asyncpg.connect(
        host=LOOPBACK, port=port, user=app.user, password=app.password, database=app.database
    )
    try:
        assert not await conn.fetchval("SELECT pg_is_in_recovery()"), "not the leader"
        dup = await conn.fetchval("SELECT count(*) - count(DISTINCT id) FROM ha_writes")
        assert dup == 0
        return {r[0] for r in await conn.fetch("SELECT id FROM ha_writes")}
    finally:
        await conn.close()


async def watch_leader(cluster: PatroniCluster, old: str, found: dict[str, float]) -> None:
    """Note when Patroni first reports a running leader other than `old`."""
    while True:
        leader = await asyncio.to_thread(cluster.leader)
        if leader is not None and leader.name != old:
            found["at"] = time.monotonic()
            return
        await asyncio.sleep(0.1)


async def run_scenario(
    app: HaApp,
    name: str,
    event: Callable[[PatroniCluster, Member], Awaitable[object]],
    writer: Writer = write_in_scope,
) -> Figures:
    """Load, event, recovery: the figures of one failover, reported and returned."""
    cluster = app.cluster
    old = await asyncio.to_thread(cluster.wait_healthy, 90)
    db = DatabaseConnection(app.url(), settings=app_settings())
    patroni: dict[str, float] = {}
    watcher: asyncio.Task[None] | None = None
    try:
        async with WriteLoad(db, tasks=TASKS, writer=writer) as load:
            await load.wait_ack(lambda u: u.port == old.port, timeout=30)
            await asyncio.sleep(WARM_UP_SECONDS)
            event_at = time.monotonic()
            watcher = asyncio.create_task(watch_leader(cluster, old.name, patroni))
            await event(cluster, old)
            first = await load.wait_ack(lambda u: u.port != old.port, timeout=60)
            await asyncio.sleep(AFTER_RECOVERY_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(watcher), 10)
    finally:
        if watcher is not None:
            watcher.cancel()
        await db.dispose()
    new = await asyncio.to_thread(cluster.wait_leader, other_than=old.name)
    assert new.port == first.port, "writes were acknowledged by a node that is not the leader"
    extra = {"leader per Patroni after": f"{patroni['at'] - event_at:.2f} s"} if patroni else {}
    figures = Figures(
        name, event_at, old.port, new.port, load.units, await ids_on(app, new.port), extra
    )
    report = figures.summary()
    print(report)
    REPORTS.append(report)
    return figures


def check(figures: Figures, limit: float) -> None:
    assert figures.untyped_failures == [], figures.describe(figures.untyped_failures)
    assert figures.unexpected_failures == [], figures.describe(figures.unexpected_failures)
    assert figures.failed_before_event == [], figures.describe(figures.failed_before_event)
    assert figures.lost == [], f"{len(figures.lost)} acknowledged units are not on the leader"
    assert figures.failed_after_recovery == [], figures.describe(figures.failed_after_recovery)
    assert figures.recovery_seconds < limit


def goal(figures: Figures, seconds: float) -> None:
    met = "met" if figures.recovery_seconds <= seconds else "NOT met"
    REPORTS.append(f"  goal: writes back within {seconds:.0f} s: {met}")


async def test_multi_host_urls_find_the_leader_and_a_standby(ha_app: HaApp) -> None:
    """The URL forms the README shows: writes land on the leader, reads on a standby."""
    leader = await asyncio.to_thread(ha_app.cluster.wait_healthy, 90)
    ports = ",".join(str(n.port) for n in ha_app.cluster.nodes)
    comma_form = (
        f"postgresql+asyncpg://{ha_app.user}:{ha_app.password}@/{ha_app.database}"
        f"?host={LOOPBACK},{LOOPBACK},{LOOPBACK}&port={ports}&target_session_attrs=read-write"
    )
    for url in (ha_app.url(), ha_app.url_string(), comma_form):
        db = DatabaseConnection(url, settings=app_settings())
        try:
            assert await server_port(db) == (leader.port, False)
        finally:
            await db.dispose()
    db = DatabaseConnection(
        ha_app.url(), read_url=ha_app.url_string("prefer-standby"), settings=app_settings()
    )
    try:
        port, in_recovery = await server_port(db, read=True)
        assert in_recovery and port != leader.port
        assert await server_port(db) == (leader.port, False)
    finally:
        await db.dispose()


async def test_unplanned_failover_kill_9_of_the_leaders_postmaster(ha_app: HaApp) -> None:
    async def kill(cluster: PatroniCluster, leader: Member) -> None:
        cluster.kill_postmaster(leader.name)

    figures = await run_scenario(ha_app, "kill -9 of the leader's postmaster", kill)
    goal(figures, CRASH_GOAL)
    check(figures, CRASH_LIMIT)


async def test_planned_switchover(ha_app: HaApp) -> None:
    async def switchover(cluster: PatroniCluster, leader: Member) -> None:
        await asyncio.to_thread(cluster.switchover)

    figures = await run_scenario(ha_app, "planned switchover (POST /switchover)", switchover)
    goal(figures, SWITCHOVER_GOAL)
    check(figures, SWITCHOVER_LIMIT)


async def test_switchover_with_run_retries_fails_no_unit(ha_app: HaApp) -> None:
    """With `db.run(..., idempotent=True)` and an idempotent insert, the client sees no
    failure at all during a switchover, and every id is on the new leader exactly once."""

    async def switchover(cluster: PatroniCluster, leader: Member) -> None:
        await asyncio.to_thread(cluster.switchover)

    figures = await run_scenario(
        ha_app,
        f"planned switchover, units through db.run(retries={RUN_RETRIES}, idempotent=True)",
        switchover,
        write_with_run(RUN_RETRIES),
    )
    goal(figures, SWITCHOVER_GOAL)
    assert figures.failed == [], figures.describe(figures.failed)
    check(figures, SWITCHOVER_LIMIT)
