"""Small helpers of the foundation tests: a dead port, a canary password, committed rows."""

from __future__ import annotations

import socket

import httpx
from sqlalchemy import text
from sqlalchemy.pool import QueuePool
from starlette.types import ASGIApp

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.models import User
from tests.factories import PASSWORD_HASH

# A password that must never show in any output, message, repr or log.
CANARY = "Canary-pw-7Qz9-never-print"


def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
