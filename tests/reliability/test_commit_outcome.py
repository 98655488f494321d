"""A connection lost while COMMIT is in flight: the outcome is unknowable, and says so."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.errors import CommitOutcomeUnknownError, ConflictError
from tests.reliability.support import connect
from tests.servers import admin_connection

# The row's deferred constraint trigger sleeps at COMMIT time, so COMMIT is in flight long
# enough to kill the backend under it.
SLOW_COMMIT_DDL = """
CREATE TABLE IF NOT EXISTS outcome_probe (marker text NOT NULL);
CREATE OR REPLACE FUNCTION outcome_probe_check() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
DROP TRIGGER IF EXISTS outcome_probe_check ON outcome_probe;
CREATE CONSTRAINT TRIGGER outcome_probe_check AFTER INSERT ON outcome_probe
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION outcome_probe_check();
"""
REFUSING_DDL = """
CREATE TABLE IF NOT EXISTS refused_probe (marker text NOT NULL);
CREATE OR REPLACE FUNCTION refused_probe_check() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '40001'; END $$;
DROP TRIGGER IF EXISTS refused_probe_check ON refused_probe;
CREATE CONSTRAINT TRIGGER refused_probe_check AFTER INSERT ON refused_probe
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refused_probe_check();
"""


async def test_connection_lost_during_commit_is_commit_outcome_unknown(
    own_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await admin_connection(own_url)
    db = connect(own_url)
    try:
        await admin.execute(SLOW_COMMIT_DDL)

        async def unit() -> None:
            async with db.session_scope() as session:
                await session.execute(text("INSERT INTO outcome_probe VALUES ('lost')"))

        task = asyncio.create_task(unit())
        app = db.settings.db_application_name
        killed = False
        for _ in range(200):  # wait until the COMMIT is running, then kill its backend
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
                " AND query LIKE 'COMMIT%' AND state = 'active'",
                app,
            )
            if pid:
                killed = await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                break
            await asyncio.sleep(0.02)
        assert killed
        with caplog.at_level(logging.WARNING, "exportsathi_db"), pytest.raises(
            CommitOutcomeUnknownError
        ) as caught:
            await task
        assert not caught.value.retryable
        assert "may or may not be committed" in caplog.text
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with db.session_scope() as session:  # the pool recovers at once
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await admin.close()
        await db.dispose()


async def test_commit_refused_by_the_server_is_an_ordinary_typed_error(own_url: URL) -> None:
    """The server answered COMMIT with an error: known to be rolled back, nothing unknown."""
    admin = await admin_connection(own_url)
    db = connect(own_url)
    try:
        await admin.execute(REFUSING_DDL)
        with pytest.raises(ConflictError):
            async with db.session_scope() as session:
                await session.execute(text("INSERT INTO refused_probe VALUES ('no')"))
        assert await admin.fetchval("SELECT count(*) FROM refused_probe") == 0
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await admin.close()
        await db.dispose()
