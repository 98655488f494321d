"""DatabaseConnection.run(): real failures on a real server are retried, the rest are not."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import (
    CommitOutcomeUnknownError,
    ConflictError,
    DatabaseUnavailableError,
    InvalidDataError,
    PoolTimeoutError,
    TransactionConflictError,
)
from exportsathi_db.retry import backoff_delay, should_retry
from tests.factories import unique
from tests.reliability.support import connect
from tests.servers import admin_connection

SCHEMA = """
CREATE TABLE IF NOT EXISTS retry_probe (marker text PRIMARY KEY, n int NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS retry_checked (n int NOT NULL CONSTRAINT retry_checked_positive
    CHECK (n > 0));
CREATE TABLE IF NOT EXISTS retry_slow_commit (marker text PRIMARY KEY);
CREATE OR REPLACE FUNCTION retry_slow_commit_check() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
DROP TRIGGER IF EXISTS retry_slow_commit_check ON retry_slow_commit;
CREATE CONSTRAINT TRIGGER retry_slow_commit_check AFTER INSERT ON retry_slow_commit
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION retry_slow_commit_check();
"""


@pytest_asyncio.fixture(loop_scope="session")
async def db(own_url: URL) -> AsyncIterator[DatabaseConnection]:
    admin = await admin_connection(own_url)
    try:
        await admin.execute(SCHEMA)
    finally:
        await admin.close()
    # A short backoff keeps the tests quick; the policy itself is tested below.
    connection = connect(own_url, db_retry_backoff_base=0.01, db_retry_backoff_cap=0.1)
    yield connection
    await connection.dispose()


async def _count(url: URL, marker: str) -> int:
    admin = await admin_connection(url)
    try:
        return int(
            await admin.fetchval("SELECT count(*) FROM retry_probe WHERE marker = $1", marker)
        )
    finally:
        await admin.close()


async def _kill(url: URL, pid: int) -> None:
    admin = await admin_connection(url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_a_connection_killed_mid_unit_is_retried_and_succeeds(
    db: DatabaseConnection, own_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    marker = unique("killed")
    calls = 0

    async def unit(session: AsyncSession) -> str:
        nonlocal calls
        calls += 1
        await session.execute(text("INSERT INTO retry_probe (marker) VALUES (:m)"), {"m": marker})
        if calls == 1:  # the server ends this backend before COMMIT was sent
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await _kill(own_url, pid)
            await session.execute(text("SELECT 1"))
        return "done"

    with caplog.at_level(logging.INFO, logger="exportsathi_db"):
        assert await db.run(unit) == "done"
    print(f"\nkilled backend: {calls} attempts")
    assert calls == 2
    assert await _count(own_url, marker) == 1
    retries = [r for r in caplog.records if "retry 1 of 6" in r.getMessage()]
    assert len(retries) == 1 and retries[0].levelno == logging.INFO
    assert "DatabaseUnavailableError" in retries[0].getMessage()
    assert marker not in caplog.text  # no parameter values in the log
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_serialization_failure_is_retried(
    db: DatabaseConnection, own_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """Two SERIALIZABLE transactions update the same row: the one that read first and
    writes second gets SQLSTATE 40001, and run() runs it again on a fresh snapshot."""
    marker = unique("serial")
    admin = await admin_connection(own_url)
    try:
        await admin.execute("INSERT INTO retry_probe (marker, n) VALUES ($1, 0)", marker)
        calls = 0

        async def unit(session: AsyncSession) -> int:
            nonlocal calls
            calls += 1
            await session.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
            n = (
                await session.execute(
                    text("SELECT n FROM retry_probe WHERE marker = :m"), {"m": marker}
                )
            ).scalar_one()
            if calls == 1:  # a concurrent SERIALIZABLE transaction commits an update first
                async with admin.transaction(isolation="serializable"):
                    await admin.execute(
                        "UPDATE retry_probe SET n = n + 10 WHERE marker = $1", marker
                    )
            await session.execute(
                text("UPDATE retry_probe SET n = :n WHERE marker = :m"),
                {"n": n + 1, "m": marker},
            )
            return int(n) + 1

        with caplog.at_level(logging.INFO, logger="exportsathi_db"):
            assert await db.run(unit) == 11  # the retry saw the concurrent +10
        print(f"\nserialization failure: {calls} attempts")
        assert calls == 2
        assert "failed (TransactionConflictError); retry 1 of 6" in caplog.text
        assert await admin.fetchval("SELECT n FROM retry_probe WHERE marker = $1", marker) == 11
    finally:
        await admin.close()


async def test_a_deadlock_is_retried(
    db: DatabaseConnection, own_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """Two units lock two rows in opposite orders: the server aborts one (40P01); run()
    runs it again and both succeed."""
    first, second = unique("dead-a"), unique("dead-b")
    admin = await admin_connection(own_url)
    try:
        await admin.execute("INSERT INTO retry_probe (marker) VALUES ($1), ($2)", first, second)
    finally:
        await admin.close()
    both_locked = asyncio.Barrier(2)
    calls = {first: 0, second: 0}

    def locking(one: str, other: str):  # type: ignore[no-untyped-def]
        async def unit(session: AsyncSession) -> None:
            calls[one] += 1
            lock = text("UPDATE retry_probe SET n = n + 1 WHERE marker = :m")
            await session.execute(lock, {"m": one})
            if calls[one] == 1:
                await both_locked.wait()
            await session.execute(lock, {"m": other})

        return unit

    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="exportsathi_db"):
        await asyncio.gather(db.run(locking(first, second)), db.run(locking(second, first)))
    assert caplog.text.count("failed (TransactionConflictError); retry 1 of 6") == 1
    print(f"\ndeadlock: attempts {sorted(calls.values())}, {time.monotonic() - started:.2f} s")
    assert sorted(calls.values()) == [1, 2]
    admin = await admin_connection(own_url)
    try:
        rows = await admin.fetch(
            "SELECT n FROM retry_probe WHERE marker = ANY($1::text[])", [first, second]
        )
        assert [r["n"] for r in rows] == [2, 2]
    finally:
        await admin.close()


async def test_conflict_errors_keep_their_place_in_the_hierarchy() -> None:
    error = TransactionConflictError("x", sqlstate="40001")
    assert isinstance(error, ConflictError) and error.retryable and error.sqlstate == "40001"


async def _commit_killed_once(db: DatabaseConnection, url: URL, marker: str, idempotent: bool):  # type: ignore[no-untyped-def]
    """run() a unit whose first COMMIT is in flight when its backend is killed; (calls, error)."""
    calls = 0

    async def unit(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        await session.execute(
            text("INSERT INTO retry_slow_commit VALUES (:m) ON CONFLICT DO NOTHING"),
            {"m": marker},
        )

    admin = await admin_connection(url)
    try:
        task = asyncio.create_task(db.run(unit, idempotent=idempotent))
        app = db.settings.db_application_name
        for _ in range(250):  # wait until the first COMMIT runs, then kill its backend
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
                " AND query LIKE 'COMMIT%' AND state = 'active'",
                app,
            )
            if pid:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the COMMIT was never seen running")
        error: BaseException | None = None
        try:
            await task
        except Exception as exc:
            error = exc
        return calls, error
    finally:
        await admin.close()


async def test_commit_outcome_unknown_is_not_retried(db: DatabaseConnection, own_url: URL) -> None:
    calls, error = await _commit_killed_once(db, own_url, unique("unknown"), idempotent=False)
    assert isinstance(error, CommitOutcomeUnknownError)
    assert calls == 1


async def test_commit_outcome_unknown_is_retried_when_idempotent(
    db: DatabaseConnection, own_url: URL
) -> None:
    marker = unique("idempotent")
    calls, error = await _commit_killed_once(db, own_url, marker, idempotent=True)
    print(f"\nCOMMIT killed, idempotent=True: {calls} attempts")
    assert error is None and calls == 2
    admin = await admin_connection(own_url)
    try:
        n = await admin.fetchval("SELECT count(*) FROM retry_slow_commit WHERE marker = $1", marker)
        assert n == 1
    finally:
        await admin.close()


async def test_invalid_data_is_raised_at_once(db: DatabaseConnection) -> None:
    calls = 0

    async def unit(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        await session.execute(text("INSERT INTO retry_checked VALUES (-1)"))

    with pytest.raises(InvalidDataError):
        await db.run(unit, retries=5)
    assert calls == 1


async def test_an_application_error_is_raised_at_once(db: DatabaseConnection) -> None:
    calls = 0

    async def unit(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        await session.execute(text("SELECT 1"))
        raise LookupError("the application's own")

    with pytest.raises(LookupError):
        await db.run(unit)
    assert calls == 1


async def test_after_the_last_attempt_the_last_error_is_raised(
    db: DatabaseConnection, own_url: URL
) -> None:
    calls = 0

    async def unit(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await _kill(own_url, pid)
        await session.execute(text("SELECT 1"))

    with pytest.raises(DatabaseUnavailableError) as info:
        await db.run(unit, retries=2)
    assert calls == 3
    assert "after 3 attempts" in "".join(getattr(info.value, "__notes__", []))

    calls = 0
    with pytest.raises(DatabaseUnavailableError):
        await db.run(unit, retries=0)
    assert calls == 1


async def test_pool_exhaustion_is_not_retried(own_url: URL) -> None:
    db = connect(own_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.3)
    holding, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def hold() -> None:
        async with db.session_scope() as session:
            await session.execute(text("SELECT 1"))
            holding.set()
            await release.wait()

    async def unit(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        await session.execute(text("SELECT 1"))

    holder = asyncio.create_task(hold())
    try:
        await holding.wait()
        started = time.monotonic()
        with pytest.raises(PoolTimeoutError):
            await db.run(unit)
        assert calls == 1 and time.monotonic() - started < 1.5
    finally:
        release.set()
        await holder
        await db.dispose()


def test_retry_policy_and_backoff() -> None:
    assert should_retry(DatabaseUnavailableError("x"), idempotent=False)
    assert should_retry(TransactionConflictError("x", sqlstate="40P01"), idempotent=False)
    assert not should_retry(CommitOutcomeUnknownError("x"), idempotent=False)
    assert should_retry(CommitOutcomeUnknownError("x"), idempotent=True)
    assert not should_retry(ConflictError("x"), idempotent=True)
    assert not should_retry(PoolTimeoutError("x"), idempotent=True)
    assert not should_retry(InvalidDataError("f", "x"), idempotent=True)
    assert not should_retry(ValueError("x"), idempotent=True)
    delays = [backoff_delay(r, base=0.1, cap=1.0) for r in (1, 2, 3, 4, 5, 40) for _ in range(200)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert max(backoff_delay(1, base=0.1, cap=1.0) for _ in range(200)) <= 0.1
    assert max(backoff_delay(3, base=0.1, cap=1.0) for _ in range(500)) > 0.2  # it grows
    assert len({round(d, 6) for d in delays}) > 100  # and is jittered


async def test_retries_must_not_be_negative(db: DatabaseConnection) -> None:
    async def unit(session: AsyncSession) -> None:
        return None

    with pytest.raises(ValueError, match="retries"):
        await db.run(unit, retries=-1)
