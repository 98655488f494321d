"""Small helpers shared by the reliability tests: settings, connections, server-side probes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import URL

from exportsathi_db.config import Settings
from exportsathi_db.database import DatabaseConnection
from tests.factories import unique
from tests.servers import admin_connection


def settings(**overrides: Any) -> Settings:
    """Settings built here, not from the environment: no replica, a unique application_name."""
    values: dict[str, Any] = {
        "database_url": None,
        "database_read_url": None,
        "db_application_name": unique("reliability"),
        "db_pgbouncer": False,
        "db_echo": False,
    }
    return Settings(**(values | overrides))


def connect(url: URL, *, read_url: URL | None = None, **overrides: Any) -> DatabaseConnection:
    """A DatabaseConnection of its own (dispose it at the end of the test)."""
    return DatabaseConnection(url, read_url=read_url, settings=settings(**overrides))


async def app_backends(url: URL, application_name: str) -> list[dict[str, Any]]:
    """The server's view of the app's connections: pid and state, from pg_stat_activity."""
    conn = await admin_connection(url)
    try:
        rows = await conn.fetch(
            "SELECT pid, state, query FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 5.0) -> bool:
    """Poll `check` until it is true or `timeout` seconds pass; the last result."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
