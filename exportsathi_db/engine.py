"""The async engine, built from settings, and the pool's guards on every connection."""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, ExceptionContext
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from exportsathi_db.config import Settings, parse_database_url
from exportsathi_db.credentials import PasswordProvider, password_source
from exportsathi_db.errors import ConfigurationError, PasswordProviderError, is_command_timeout
from exportsathi_db.observability.pool import MeasuredPool
from exportsathi_db.observability.slow_statements import log_slow_statements

logger = logging.getLogger("exportsathi_db")

# A pooled connection idle for longer than this is pinged (one round trip) before reuse.
PING_AFTER_IDLE_SECONDS = 10.0
# How often the server checks, during a statement, that the client is still connected.
CLIENT_CHECK_INTERVAL_MS = 1000
# Unanswered keepalive probes (one every DB_SERVER_KEEPALIVE_IDLE / 5 s) before the server
# drops a silent client: it is gone after about twice DB_SERVER_KEEPALIVE_IDLE.
KEEPALIVE_PROBES = 5


# Connections opened before this time (time.monotonic()) are replaced at their next checkout
# and closed at check-in: set by `retire_connections`, e.g. when the server turned out to be a
# standby. One entry per engine (its sync Engine), gone with it.
_retired_before: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def create_engine(
    raw_url: str | URL, settings: Settings, *, password: PasswordProvider | None = None
) -> AsyncEngine:
    """An asyncpg engine for `raw_url` with the pool, timeouts and guards of `settings`.

    `password` (a callable, sync or async, returning the password), else `DB_PASSWORD_COMMAND`,
    is asked for the password each time a new connection is opened; the URL's password is
    then not used.
    """
    s = settings
    url, sslmode = parse_database_url(raw_url)
    if (
        s.db_command_timeout is not None
        and s.db_statement_timeout_ms is not None
        and s.db_statement_timeout_ms > 0
        and s.db_command_timeout * 1000 <= s.db_statement_timeout_ms
    ):
        raise ConfigurationError(
            "DB_COMMAND_TIMEOUT (seconds) must be longer than DB_STATEMENT_TIMEOUT_MS "
            "(milliseconds): the client would give up on a slow statement before the server "
            "stops it"
        )
    provider = password_source(s, password)
    if provider is not None and s.db_password_timeout >= s.db_connect_timeout:
        raise ConfigurationError(
            "DB_PASSWORD_TIMEOUT must be shorter than DB_CONNECT_TIMEOUT: the password "
            "provider runs inside the connection attempt"
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
        "command_timeout": s.db_command_timeout,
        "server_settings": server_settings,
    }
    if provider is not None:  # asyncpg calls it for each new connection
        connect_args["password"] = provider
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
        poolclass=MeasuredPool,  # counts the waits for a connection (pool_status)
        pool_size=s.db_pool_size,
        max_overflow=s.db_max_overflow,
        pool_timeout=s.db_pool_timeout,
        pool_recycle=s.db_pool_recycle,
        pool_pre_ping=False,  # replaced by the cheaper checkout check below
        echo=s.db_echo,
        hide_parameters=not s.db_log_parameters,
        connect_args=connect_args,
    )
    sync = engine.sync_engine
    _retired_before[sync] = 0.0
    ping_timeout = min(s.db_connect_timeout, s.db_command_timeout or s.db_connect_timeout)

    def check_on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        _check_on_checkout(dbapi_connection, record, proxy, ping_timeout, _retired_before[sync])

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        _on_checkin(dbapi_connection, record, _retired_before[sync])

    event.listen(sync, "connect", _note_opened)
    event.listen(sync, "checkout", check_on_checkout)
    event.listen(sync, "checkin", on_checkin)
    event.listen(sync, "handle_error", _close_unresponsive)
    if provider is not None:
        event.listen(sync, "handle_error", _provider_password_refused)
    if s.db_slow_statement_ms is not None:
        log_slow_statements(sync, s.db_slow_statement_ms)
    if not s.db_pgbouncer:  # a SET would leak to PgBouncer's other clients
        keepalive = s.db_server_keepalive_idle

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            _set_session_guards(dbapi_connection, keepalive)

        event.listen(sync, "connect", on_connect)
    return engine


def retire_connections(engine: AsyncEngine | Engine) -> None:
    """Replace every connection of `engine`'s pool opened until now: idle ones at their next
    checkout, checked-out ones when they come back. For when the server behind them is known
    to be the wrong one (e.g. a primary demoted to a standby): the new connections reach
    whichever server the URL (a virtual IP, a proxy, several hosts) leads to now."""
    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    if sync in _retired_before:
        _retired_before[sync] = time.monotonic()


def _note_opened(_dbapi_connection: Any, record: Any) -> None:
    record.info["opened_at"] = time.monotonic()


def _close_unresponsive(context: ExceptionContext) -> None:
    """A statement run through SQLAlchemy waited longer than DB_COMMAND_TIMEOUT: close the
    connection now and have SQLAlchemy invalidate it (only it: the pool's others may be fine).
    asyncpg would otherwise keep it waiting for the cancel request's answer, and a rollback
    or a graceful close would wait for a server that does not answer."""
    if not is_command_timeout(context.original_exception):
        return
    connection = context.connection
    if connection is not None and not connection.invalidated and not connection.closed:
        driver = connection.connection.driver_connection
        if driver is not None:
            driver.terminate()  # no I/O: the socket is closed, pending cancels are dropped
    context.is_disconnect = True
    context.invalidate_pool_on_disconnect = False


def _provider_password_refused(context: ExceptionContext) -> BaseException | None:
    """With a password provider, the server refusing its password at connect time
    (SQLSTATE 28P01) is most likely a rotation in progress (a token that just expired, a
    password changed between the provider's answer and the login): retryable, and the next
    attempt asks the provider again."""
    if context.connection is not None:
        return None
    seen: BaseException | None = context.original_exception
    for _ in range(4):
        if seen is None:
            break
        if getattr(seen, "sqlstate", None) == "28P01":
            return PasswordProviderError(
                "the server refused the password the password provider returned (SQLSTATE "
                "28P01), e.g. during a rotation; retry the unit of work"
            )
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return None


def _check_on_checkout(
    dbapi_connection: Any, record: Any, _proxy: Any, ping_timeout: float, retired_before: float
) -> None:
    """Pre-ping, cheaply, refuse a connection with a transaction open, and replace one opened
    before `retire_connections` was called.

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
    if record.info.get("opened_at", retired_before) < retired_before:
        driver.terminate()
        raise DisconnectionError("the pooled connection was retired (e.g. a demoted server)")
    idle_since = record.info.get("idle_since")
    if idle_since is not None and time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS:
        try:  # no longer than a new connection may take (DB_CONNECT_TIMEOUT)
            dbapi_connection.run_async(lambda conn: conn.execute(";", timeout=ping_timeout))
        except Exception as exc:
            driver.terminate()  # it may be waiting on a silent network: close it now
            raise DisconnectionError("the pooled connection did not answer a ping") from exc


def _on_checkin(dbapi_connection: Any, record: Any, retired_before: float) -> None:
    """Close, never pool, a connection whose server still has a transaction open after the
    pool's reset: a transaction SQLAlchemy does not know of (e.g. a session not ended by a
    unit of work, cancelled at the wrong moment) that no rollback reached; or one opened before
    `retire_connections`. Otherwise note when the connection went idle, for the checkout's
    ping."""
    if dbapi_connection is None:  # already invalidated
        return
    if dbapi_connection.driver_connection.is_in_transaction():
        logger.warning("a connection came back with a transaction open: closing it")
        record.invalidate()
        return
    if record.info.get("opened_at", retired_before) < retired_before:
        record.invalidate()
        return
    record.info["idle_since"] = time.monotonic()


def _set_session_guards(dbapi_connection: Any, keepalive_idle: int | None) -> None:
    """One round trip on each new connection:

    - have the server poll the client's socket during statements (PostgreSQL 14+): when a
      connection is dropped mid-statement (e.g. its task was cancelled), the server stops the
      statement instead of running it to its end;
    - the server's TCP keepalives (DB_SERVER_KEEPALIVE_IDLE): it ends the session of a client
      that vanished behind a network partition, freeing its slot and locks. (asyncpg has no
      client-side keepalive option; the client's own waits are bounded by DB_COMMAND_TIMEOUT.)
      Set as a SET, not a startup parameter, which proxies may refuse; ignored by the server
      on a unix socket.
    """
    driver = dbapi_connection.driver_connection
    sql = []
    if driver.get_server_version() >= (14,):
        sql.append(f"SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}")
    if keepalive_idle is not None:
        interval = max(1, keepalive_idle // KEEPALIVE_PROBES)
        sql += [
            f"SET tcp_keepalives_idle = {int(keepalive_idle)}",
            f"SET tcp_keepalives_interval = {interval}",
            f"SET tcp_keepalives_count = {KEEPALIVE_PROBES}",
        ]
    if sql:
        statement = "; ".join(sql)
        dbapi_connection.run_async(lambda conn: conn.execute(statement))


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4()}__"
