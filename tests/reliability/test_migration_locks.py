"""Migrations against tables another session holds: every lock wait is bounded by
DB_MIGRATION_LOCK_TIMEOUT_MS, the whole migration transaction is retried, and the last
failure names the blocking session. Real sessions on a server of this module's own: a
transaction that read `reports` and stays open (ACCESS SHARE), a migration that needs
ACCESS EXCLUSIVE, and the application's ordinary queries queued behind it."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import QueryTimeoutError
from exportsathi_db.migrations import (
    MigrationLockTimeoutError,
    current_revision,
    downgrade_db,
    drop_db,
    head_revision,
    init_db,
    migrations_dir,
    run_migration,
)
from exportsathi_db.servers import TemporaryCluster
from exportsathi_db.testing import create_database, drop_database
from tests.reliability.support import connect
from tests.rows import ALL_TABLES
from tests.servers import admin_connection
from tests.test_cli import Run, run

LOCK_MS = 600  # the lock timeout of these tests (the default is 2000 ms)
BLOCKER = "report-reader"  # the application_name of the blocking session
# Interpreter, pool and scheduling overhead allowed on top of the computed bounds.
SLACK = 1.5


def backoffs(retries: int) -> float:
    """The pauses between the attempts, as exportsathi_db.migrations computes them."""
    return sum(LOCK_MS / 4000 * 2**n for n in range(retries))


@pytest_asyncio.fixture(loop_scope="session")
async def migrated(own_server: TemporaryCluster) -> AsyncIterator[URL]:
    """A database of its own at head, dropped after the test."""
    url = await create_database(own_server.url())
    db = connect(url)
    try:
        await init_db(db)
    finally:
        await db.dispose()
    yield url
    await drop_database(url)


@dataclass
class Blocker:
    """A session with an open transaction that has read `reports` (ACCESS SHARE, idle)."""

    connection: asyncpg.Connection
    transaction: asyncpg.transaction.Transaction
    pid: int
    open: bool = True

    async def commit(self) -> None:
        if self.open:
            self.open = False
            await self.transaction.commit()


@asynccontextmanager
async def reading_reports(url: URL) -> AsyncIterator[Blocker]:
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
        server_settings={"application_name": BLOCKER},
    )
    transaction = conn.transaction()
    await transaction.start()
    await conn.fetchval("SELECT count(*) FROM reports")
    blocker = Blocker(conn, transaction, conn.get_server_pid())
    try:
        yield blocker
    finally:
        if blocker.open:
            await transaction.rollback()
        await conn.close()


@dataclass
class AppLoad:
    """The application's ordinary reads and writes, one after another on a pool of its own,
    timing each one: how long did a query wait behind the migration?"""

    db: DatabaseConnection
    waits: list[float] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            async with self.db.session_scope() as session:
                await session.execute(text("SELECT count(*) FROM reports"))
                await session.execute(text("SELECT count(*) FROM users"))
                await session.execute(
                    text(
                        "INSERT INTO users (email, password_hash, business_type, company_size)"
                        " VALUES (:email, 'x', 'SaaS', 'Micro')"
                    ),
                    {"email": f"load-{id(self)}-{n}@example.in"},
                )
            self.waits.append(time.monotonic() - started)
            await asyncio.sleep(0.02)


@asynccontextmanager
async def app_load(url: URL) -> AsyncIterator[AppLoad]:
    load = AppLoad(connect(url, db_application_name="the-app"))
    task = asyncio.create_task(load.run())
    try:
        yield load
    finally:
        load.stop.set()
        await task
        await load.db.dispose()


def migrator(url: URL, retries: int) -> DatabaseConnection:
    return connect(url, db_migration_lock_timeout_ms=LOCK_MS, db_migration_lock_retries=retries)


async def tables(url: URL) -> set[str]:
    conn = await admin_connection(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return {r["table_name"] for r in rows}


def seconds_in_all(message: str) -> float:
    """How long the migration tried, from its message: a subprocess's own run time would
    add the interpreter's start-up, which varies by seconds on a busy machine."""
    found = re.search(r"\((\d+\.\d) s in all\)", message)
    assert found, message
    return float(found[1])


def assert_names_the_blocker(message: str, blocker: Blocker) -> None:
    assert f"pid {blocker.pid} (application_name '{BLOCKER}', idle in transaction" in message
    assert "query: SELECT count(*) FROM reports)" in message
    assert f"DB_MIGRATION_LOCK_TIMEOUT_MS ({LOCK_MS} ms)" in message
    assert "Nothing was changed" in message
    assert f"SELECT pg_terminate_backend(pid) for pid {blocker.pid}" in message


async def test_a_blocked_downgrade_fails_in_time_and_the_app_keeps_going(migrated: URL) -> None:
    retries = 2
    db = migrator(migrated, retries)
    try:
        async with reading_reports(migrated) as blocker:
            async with app_load(migrated) as load:
                await asyncio.sleep(0.3)  # the app is running before the migration starts
                started = time.monotonic()
                with pytest.raises(MigrationLockTimeoutError) as info:
                    await downgrade_db("base", db)
                took = time.monotonic() - started
                await asyncio.sleep(0.3)
            error = info.value
            bound = (retries + 1) * LOCK_MS / 1000 + backoffs(retries)
            print(f"\nfailed after {took:.2f} s (bound {bound:.2f} s); {len(load.waits)} app")
            print(f"units of work, the longest {max(load.waits):.3f} s; error: {error}")
            assert bound - 0.1 < took < bound + SLACK
            assert error.retryable and isinstance(error, QueryTimeoutError)
            assert error.attempts == retries + 1
            # The oldest transaction first. An app transaction that read `reports` just before
            # the migration asked for it, and now waits for `users`, which the migration has
            # locked already, blocks it too (a deadlock the lock timeout ends first).
            assert error.blockers[0].pid == blocker.pid
            assert error.blockers[0].application_name == BLOCKER
            assert {b.application_name for b in error.blockers[1:]} <= {"the-app"}
            assert error.blockers[0].seconds > took
            assert "in each of 3 attempts" in str(error)
            assert_names_the_blocker(str(error), blocker)

            # The app's queries queued behind the migration only while one lock wait lasted.
            assert len(load.waits) > 20
            assert max(load.waits) < LOCK_MS / 1000 + 0.4, sorted(load.waits)[-5:]

            # Nothing was changed; once the blocker has finished, the same call succeeds.
            assert await current_revision(db) == head_revision()
            assert await tables(migrated) >= set(ALL_TABLES)
            await blocker.commit()
            await downgrade_db("base", db)
        assert await tables(migrated) == {"alembic_version"}
    finally:
        await db.dispose()


async def test_the_migration_is_retried_until_the_blocker_is_gone(
    migrated: URL, caplog: pytest.LogCaptureFixture
) -> None:
    db = migrator(migrated, retries=5)
    try:
        async with reading_reports(migrated) as blocker:

            async def release_later() -> None:
                await asyncio.sleep(1.5 * LOCK_MS / 1000)  # after the first attempt failed
                await blocker.commit()

            releasing = asyncio.create_task(release_later())
            with caplog.at_level(logging.WARNING, logger="exportsathi_db"):
                started = time.monotonic()
                await downgrade_db("base", db)
                took = time.monotonic() - started
            await releasing
        retried = [r.getMessage() for r in caplog.records if "migration attempt" in r.message]
        print(f"succeeded after {took:.2f} s; {retried}")
        assert 1 <= len(retried) <= 3
        assert retried[0].startswith("migration attempt 1 of 6: `DROP TRIGGER")
        waited = f"waited DB_MIGRATION_LOCK_TIMEOUT_MS ({LOCK_MS} ms), blocked by pid {blocker.pid}"
        assert waited in retried[0]
        assert took > LOCK_MS / 1000
        assert await tables(migrated) == {"alembic_version"}
    finally:
        await db.dispose()


async def test_a_deadlock_with_the_migration_is_retried_too(
    migrated: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock timeout above the server's deadlock_timeout (1 s): the blocker, while the
    migration waits for `reports`, asks for `users`, which the migration has locked already.
    The server's deadlock detector ends the migration's transaction (it waited first); that
    is retried like a lock timeout, and succeeds once the blocker has committed."""
    db = connect(migrated, db_migration_lock_timeout_ms=3000, db_migration_lock_retries=2)
    try:
        async with reading_reports(migrated) as blocker:
            with caplog.at_level(logging.WARNING, logger="exportsathi_db"):
                migrating = asyncio.create_task(downgrade_db("base", db))
                await asyncio.sleep(0.3)  # the migration has locked `users`, waits for `reports`
                await blocker.connection.fetchval("SELECT count(*) FROM users")  # a cycle
                await blocker.commit()
                await migrating
        retried = [r.getMessage() for r in caplog.records if "migration attempt" in r.message]
        assert len(retried) == 1, retried
        assert retried[0].startswith(
            "migration attempt 1 of 3: `DROP TRIGGER IF EXISTS trg_reports_updated_at ON "
            "reports` was ended by the server's deadlock detector, blocked by pid "
            f"{blocker.pid} (application_name '{BLOCKER}'"
        )
        assert await tables(migrated) == {"alembic_version"}
    finally:
        await db.dispose()


async def test_a_blocked_drop_fails_then_succeeds(migrated: URL) -> None:
    db = migrator(migrated, retries=1)
    try:
        async with reading_reports(migrated) as blocker:
            started = time.monotonic()
            with pytest.raises(MigrationLockTimeoutError) as info:
                await drop_db(db)
            took = time.monotonic() - started
            assert took < 2 * LOCK_MS / 1000 + backoffs(1) + SLACK
            assert "in each of 2 attempts" in str(info.value)
            assert_names_the_blocker(str(info.value), blocker)
            assert await tables(migrated) >= set(ALL_TABLES)
            await blocker.commit()
            await drop_db(db)
        assert await tables(migrated) == set()
    finally:
        await db.dispose()


async def test_the_timeouts_hold_inside_the_migration_only(migrated: URL) -> None:
    db = connect(
        migrated,
        db_migration_lock_timeout_ms=1234,
        db_migration_statement_timeout_ms=5678,
        db_statement_timeout_ms=20_000,
    )
    seen: list[tuple[str, ...]] = []

    def look(connection: Connection) -> None:
        sql = "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
        seen.append(tuple(connection.execute(text(sql)).one()))

    try:
        await run_migration(db, look)
        async with db.engine.connect() as conn:  # the same pooled connection, afterwards
            await conn.run_sync(look)
    finally:
        await db.dispose()
    assert seen == [("1234ms", "5678ms"), ("0", "20s")]


async def test_a_statement_timeout_is_a_clear_error_and_not_retried(migrated: URL) -> None:
    db = connect(
        migrated,
        db_migration_lock_timeout_ms=100,
        db_migration_statement_timeout_ms=200,
        db_migration_lock_retries=3,
    )
    calls = 0

    def slow(connection: Connection) -> None:
        nonlocal calls
        calls += 1
        connection.execute(text("SELECT pg_sleep(5)"))

    try:
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError) as info:
            await run_migration(db, slow)
        assert time.monotonic() - started < 2
    finally:
        await db.dispose()
    assert calls == 1 and not isinstance(info.value, MigrationLockTimeoutError)
    message = str(info.value)
    assert "`SELECT pg_sleep(5)` ran past DB_MIGRATION_STATEMENT_TIMEOUT_MS (200 ms)" in message
    assert "Nothing was changed" in message


# A migration after the initial schema that needs ACCESS EXCLUSIVE on `reports`.
SECOND_MIGRATION = '''"""a column on reports (test only)"""

import sqlalchemy as sa

from alembic import op

revision = "002"
down_revision = "001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reports", sa.Column("reviewer_note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("reports", "reviewer_note")
'''


def scripts_with_a_second_migration(directory: Path) -> Path:
    """A copy of the migrations with 002 added, and an alembic.ini that points at it."""
    scripts = directory / "alembic"
    shutil.copytree(migrations_dir(), scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "002_reviewer_note.py").write_text(SECOND_MIGRATION)
    ini = directory / "alembic.ini"
    repo_ini = (Path(__file__).resolve().parents[2] / "alembic.ini").read_text()
    ini.write_text(repo_ini.replace("%(here)s/alembic", str(scripts)))
    return ini


async def test_the_alembic_command_line_gives_up_in_time_naming_the_blocker(
    migrated: URL, tmp_path: Path
) -> None:
    ini = scripts_with_a_second_migration(tmp_path)
    env = {"DB_MIGRATION_LOCK_TIMEOUT_MS": str(LOCK_MS), "DB_MIGRATION_LOCK_RETRIES": "1"}

    async def upgrade() -> Run:
        return await run(
            "-c", str(ini), "upgrade", "head", url=migrated, cwd=tmp_path, module="alembic", **env
        )

    async with reading_reports(migrated) as blocker:
        result = await upgrade()
        assert result.code != 0 and "Traceback" not in result.printed, result
        failed = [line for line in result.out.splitlines() if line.startswith("FAILED:")]
        assert len(failed) == 1, result
        print(f"{result.seconds:.2f} s: {failed[0]}")
        assert failed[0].startswith(
            "FAILED: the migration could not get a table lock: "
            "`ALTER TABLE reports ADD COLUMN reviewer_note TEXT` waited"
        )
        assert_names_the_blocker(failed[0], blocker)
        assert "migration attempt 1 of 2: `ALTER TABLE reports" in result.err
        assert 2 * LOCK_MS / 1000 < seconds_in_all(failed[0]) < 2 * LOCK_MS / 1000 + SLACK
        await blocker.commit()
    done = await upgrade()
    assert done.code == 0, done
    db = connect(migrated)
    try:
        assert await current_revision(db) == "002"
    finally:
        await db.dispose()


async def test_the_cli_prints_one_error_line_after_its_retries(
    migrated: URL, tmp_path: Path
) -> None:
    env = {"DB_MIGRATION_LOCK_TIMEOUT_MS": str(LOCK_MS), "DB_MIGRATION_LOCK_RETRIES": "2"}
    async with reading_reports(migrated) as blocker:
        result = await run("drop", "--yes", url=migrated, cwd=tmp_path, **env)
        lines = result.err.strip().splitlines()
        print(f"{result.seconds:.2f} s: {lines[-1]}")
        bound = 3 * LOCK_MS / 1000 + backoffs(2)
        assert bound < seconds_in_all(lines[-1]) < bound + SLACK
        assert result.code == 1 and "Traceback" not in result.printed, result
        assert [line.split(":")[0] for line in lines[:-1]] == [
            "migration attempt 1 of 3",
            "migration attempt 2 of 3",
        ]
        assert lines[-1].startswith("error: the migration could not get a table lock: `DROP")
        assert_names_the_blocker(lines[-1], blocker)
        assert migrated.password is None or migrated.password not in result.printed
    assert await tables(migrated) >= set(ALL_TABLES)
