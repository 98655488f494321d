"""The async engine, built from settings, and the pool's guards on every connection."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from exportsathi_db.config import Settings, parse_database_url
from exportsathi_db.errors import ConfigurationError

logger = logging.getLogger("exportsathi_db")

# A pooled connection idle for longer than this is pinged (one round trip) before reuse.
PING_AFTER_IDLE_SECONDS = 10.0
# How often the server checks, during a statement, that the client is still connected.
CLIENT_CHECK_INTERVAL_MS = 1000


def create_engine(raw_url: str | URL, settings: Settings) -> AsyncEngine:
    """An asyncpg engine for `raw_url` with the pool, timeouts and guards of `settings`."""
    s = settings
    url, sslmode = parse_database_url(raw_url)
    timeouts = (s.db_statement_timeout_ms, s.db_idle_in_transaction_timeout_ms)
    if s.db_pgbouncer and any(t is not None for t in timeouts):
        raise ConfigurationError(
            "DB_STATEMENT_TIMEOUT_MS / DB_IDLE_IN_TRANSACTION_TIMEOUT_MS cannot pass through "
            "PgBouncer; set them on the database role instead "
            "(ALTER ROLE ... SET statement_timeout = ...)"
        )
    server_settings = {"application_name": s.db_application_name}
    if s.db_statement_timeout_ms is not None:
        server_settings["statement_timeout"] = str(s.db_statement_timeout_ms)
    if s.db_idle_in_transaction_timeout_ms is not None:
        server_settings["idle_in_transaction_session_timeout"] = str(
            s.db_idle_in_transaction_timeout_ms
        )
    connect_args: dict[str, Any] = {
        "timeout": s.db_connect_timeout,
        "server_settings": server_settings,
    }
    if sslmode or s.db_sslmode:
        connect_args["ssl"] = sslmode or s.db_sslmode
    if s.db_pgbouncer:
        # Transaction pooling hands each transaction to any server connection: no statement
        # caches, and names that never collide with another client's prepared statements.
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    engine = create_async_engine(
        url,
        pool_size=s.db_pool_size,
        max_overflow=s.db_max_overflow,
        pool_timeout=s.db_pool_timeout,
        pool_recycle=s.db_pool_recycle,
        pool_pre_ping=False,  # replaced by the cheaper checkout check below
        echo=s.db_echo,
        hide_parameters=not s.db_log_parameters,
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "checkout", _check_on_checkout)
    event.listen(engine.sync_engine, "checkin", _on_checkin)
    if not s.db_pgbouncer:  # a SET would leak to PgBouncer's other clients
        event.listen(engine.sync_engine, "connect", _check_client_connection)
    return engine


def _check_on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Pre-ping, cheaply, and refuse a connection with a transaction open.

    SQLAlchemy's pre-ping costs three round trips per checkout (BEGIN, a ping, ROLLBACK);
    this one costs none for a connection the server has closed (a restart or
    `pg_terminate_backend` closes the socket, which asyncpg notices) or that was used in the
    last PING_AFTER_IDLE_SECONDS, and one round trip after a longer idle spell, in case a
    firewall or failover dropped it silently. The pool replaces a refused one transparently.
    """
    driver = dbapi_connection.driver_connection
    if driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")
    if driver.is_in_transaction():
        raise DisconnectionError("a pooled connection had a transaction open")
    idle_since = record.info.get("idle_since")
    if idle_since is not None and time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS:
        try:
            dbapi_connection.run_async(lambda conn: conn.execute(";"))
        except Exception as exc:
            raise DisconnectionError("the pooled connection did not answer a ping") from exc


def _on_checkin(dbapi_connection: Any, record: Any) -> None:
    """Close, never pool, a connection whose server still has a transaction open after the
    pool's reset: a transaction SQLAlchemy does not know of (e.g. a session not ended by a
    unit of work, cancelled at the wrong moment) that no rollback reached. Otherwise note
    when the connection went idle, for the checkout's ping."""
    if dbapi_connection is None:  # already invalidated
        return
    if dbapi_connection.driver_connection.is_in_transaction():
        logger.warning("a connection came back with a transaction open: closing it")
        record.invalidate()
        return
    record.info["idle_since"] = time.monotonic()


def _check_client_connection(dbapi_connection: Any, _record: Any) -> None:
    """Have the server poll the client's socket during statements (PostgreSQL 14+): when a
    connection is dropped mid-statement (e.g. its task was cancelled), the server stops the
    statement instead of running it to its end.
    """
    if dbapi_connection.driver_connection.get_server_version() >= (14,):
        sql = f"SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}"
        dbapi_connection.run_async(lambda conn: conn.execute(sql))


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4()}__"
