"""Limits from the settings: pool exhaustion, statement_timeout, idle_in_transaction timeout."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.errors import DatabaseUnavailableError, PoolTimeoutError, QueryTimeoutError
from tests.reliability.support import app_backends, connect


async def test_pool_exhaustion_raises_pool_timeout(own_url: URL) -> None:
    db = connect(own_url, db_pool_size=2, db_max_overflow=0, db_pool_timeout=0.5)
    holding, release = asyncio.Barrier(3), asyncio.Event()

    async def hold() -> None:
        async with db.session_scope() as session:
            await session.execute(text("SELECT 1"))
            await holding.wait()
            await release.wait()

    try:
        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await holding.wait()  # both connections are checked out now
        started = time.monotonic()
        with pytest.raises(PoolTimeoutError) as info:
            async with db.session_scope() as session:
                await session.execute(text("SELECT 1"))
        waited = time.monotonic() - started
        assert 0.4 < waited < 3, waited
        assert isinstance(info.value, DatabaseUnavailableError) and info.value.retryable
        assert "DB_POOL_TIMEOUT" in str(info.value) and "exhausted" in str(info.value)

        release.set()
        await asyncio.gather(*holders)
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

        async def one() -> int:
            async with db.session_scope() as session:
                return int((await session.execute(text("SELECT 1"))).scalar_one())

        assert sum(await asyncio.gather(*(one() for _ in range(20)))) == 20
    finally:
        release.set()
        await db.dispose()


async def test_statement_timeout_from_settings(own_url: URL) -> None:
    db = connect(own_url, db_statement_timeout_ms=200, db_idle_in_transaction_timeout_ms=3000)
    try:
        async with db.session_scope() as session:
            shown = await session.execute(
                text(
                    "SELECT current_setting('statement_timeout'), "
                    "current_setting('idle_in_transaction_session_timeout'), "
                    "current_setting('application_name')"
                )
            )
            assert tuple(shown.one()) == ("200ms", "3s", db.settings.db_application_name)
            assert (await session.execute(text("SHOW statement_timeout"))).scalar() == "200ms"
            # Set by the package on each new connection: a dropped client's statement stops.
            shown = await session.execute(text("SHOW client_connection_check_interval"))
            assert shown.scalar() == "1s"

        started = time.monotonic()
        with pytest.raises(QueryTimeoutError) as info:
            async with db.session_scope() as session:
                await session.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 2
        assert info.value.retryable and "statement_timeout" in str(info.value)

        async with db.session_scope() as session:  # the connection is still good
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await db.dispose()


async def test_idle_in_transaction_timeout_from_settings(own_url: URL) -> None:
    db = connect(own_url, db_idle_in_transaction_timeout_ms=300)
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            async with db.session_scope() as session:
                await session.execute(text("SELECT 1"))
                await asyncio.sleep(1.0)  # the server ends the idle transaction's session
                await session.execute(text("SELECT 1"))
        assert info.value.retryable
        assert not [
            b
            for b in await app_backends(own_url, db.settings.db_application_name)
            if b["state"] != "idle"
        ]
        async with db.session_scope() as session:  # a fresh connection replaces the dead one
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await db.dispose()
