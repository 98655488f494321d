"""Small helpers of the foundation tests: a dead port, a canary password, committed rows."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.pool import QueuePool
from starlette.types import ASGIApp

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.models import User
from exportsathi_db.servers import free_port as free_port  # a dead port, for the tests
from tests.factories import PASSWORD_HASH

# A password that must never show in any output, message, repr or log.
CANARY = "Canary-pw-7Qz9-never-print"


def new_user(email: str) -> User:
    return User(
        email=email, password_hash=PASSWORD_HASH, business_type="SaaS", company_size="Small"
    )


def in_use(db: DatabaseConnection) -> int:
    """Connections checked out of the pool right now."""
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


async def committed(db: DatabaseConnection, email: str) -> int:
    """How many users with `email` another connection sees (only committed rows)."""
    async with db.engine.connect() as conn:
        sql = text("SELECT count(*) FROM users WHERE lower(email) = lower(:e)")
        count: int = (await conn.execute(sql, {"e": email})).scalar_one()
        return count


def client(app: ASGIApp) -> httpx.AsyncClient:
    """An HTTP client calling `app` in-process; app errors become 500 responses."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")
