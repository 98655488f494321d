"""The async engine, the session factory and the unit of work; nothing is created at import."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from exportsathi_db.config import Settings, get_settings, parse_database_url
from exportsathi_db.errors import ConfigurationError, translate

logger = logging.getLogger("exportsathi_db")

# After a failed replica checkout, reads go to the primary for this long before retrying.
REPLICA_RETRY_SECONDS = 5
# A pooled connection idle for longer than this is pinged (one round trip) before reuse.
PING_AFTER_IDLE_SECONDS = 10.0
# How often the server checks, during a statement, that the client is still connected.
CLIENT_CHECK_INTERVAL_MS = 1000


class DatabaseConnection:
    """An engine and session factory built on first use, from a URL or from settings.

    `db_connection` is the process-wide default; build more of these for tests, other
    databases or other event loops (an engine belongs to the loop it was first used on).
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        read_url: str | URL | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._url = url
        self._read_url = read_url
        self._settings = settings
        self._engine: AsyncEngine | None = None
        self._session_factory: async_sessionmaker[AsyncSession] | None = None
        self._replica: AsyncEngine | None = None
        self._read_factories: dict[bool, async_sessionmaker[AsyncSession]] = {}
        self._replica_down_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        where = self._engine.url.render_as_string(hide_password=True) if self._engine else "unused"
        return f"DatabaseConnection({where})"

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @property
    def url(self) -> URL:
        """The asyncpg URL in use (its repr and str hide the password)."""
        return self.engine.url

    @property
    def engine(self) -> AsyncEngine:
        """The engine, built on first use; it belongs to the event loop that first uses it."""
        self._check_loop()
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    def _check_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # plain sync access (e.g. to read the URL)
            return
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise ConfigurationError(
                "this DatabaseConnection is bound to another event loop: its pooled asyncpg "
                "connections cannot be used here. Use one per loop, or `await dispose()` first"
            )

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        self._check_loop()  # the cached factory must not bypass the event-loop guard
        if self._session_factory is None:
            self._session_factory = async_sessionmaker(self.engine, expire_on_commit=False)
        return self._session_factory

    @asynccontextmanager
    async def session_scope(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back and re-raise on error, always close."""
        async with _unit_of_work(self.session_factory(), commit=True) as session:
            yield session

    @asynccontextmanager
    async def read_scope(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work: on the replica (`DATABASE_READ_URL`) if there is one and it
        answers, else on the primary. Writes inside it raise `ReadOnlyError`.

        A replica lags the primary: read your own writes from `session_scope()` instead.
        """
        async with _unit_of_work(await self._read_session(), commit=False) as session:
            yield session

    @property
    def has_replica(self) -> bool:
        return (self._read_url or self.settings.database_read_url) is not None

    async def _read_session(self) -> AsyncSession:
        self._check_loop()  # the cached factories must not bypass the event-loop guard
        if self.has_replica and time.monotonic() >= self._replica_down_until:
            session = self._read_factory(replica=True)()
            try:
                await session.connection()  # checks the replica out now, so we can fall back
                return session
            except Exception as exc:
                await session.close()
                self._replica_down_until = time.monotonic() + REPLICA_RETRY_SECONDS
                logger.warning(
                    "read replica unavailable (%s): reading from the primary for %d s",
                    type(translate(exc)).__name__,
                    REPLICA_RETRY_SECONDS,
                )
        return self._read_factory(replica=False)()

    def _read_factory(self, *, replica: bool) -> async_sessionmaker[AsyncSession]:
        if replica not in self._read_factories:
            engine = self.engine
            if replica:
                if self._replica is None:
                    raw = self._read_url or self.settings.database_read_url
                    assert raw is not None
                    self._replica = self._create_engine(
                        raw if isinstance(raw, (str, URL)) else raw.get_secret_value()
                    )
                engine = self._replica
            # BEGIN READ ONLY: the server itself refuses writes in these sessions.
            bind = engine.execution_options(postgresql_readonly=True)
            self._read_factories[replica] = async_sessionmaker(bind, expire_on_commit=False)
        return self._read_factories[replica]

    async def dispose(self) -> None:
        """Close every pooled connection; afterwards the connection may be used on a new loop."""
        engines = [e for e in (self._engine, self._replica) if e is not None]
        self._engine = self._replica = None
        self._session_factory, self._read_factories = None, {}
        loop, self._loop = self._loop, None
        for engine in engines:
            if loop is None or loop is asyncio.get_running_loop():
                await engine.dispose()
            else:  # that loop's connections cannot be closed from here: drop them
                engine.sync_engine.dispose(close=False)

    def _create_engine(self, raw_url: str | URL | None = None) -> AsyncEngine:
        s = self.settings
        if raw_url is None:  # an explicit "" is a bad URL, not "use the configured one"
            raw_url = self._url if self._url is not None else self._configured_url()
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
            connect_args=connect_args,
        )
        event.listen(engine.sync_engine, "checkout", _check_on_checkout)
        event.listen(engine.sync_engine, "checkin", _note_checkin)
        if not s.db_pgbouncer:  # a SET would leak to PgBouncer's other clients
            event.listen(engine.sync_engine, "connect", _check_client_connection)
        return engine

    def _configured_url(self) -> str | URL:
        s = self.settings
        if s.database_url is not None:
            return s.database_url.get_secret_value()
        if s.environment == "production":
            raise ConfigurationError(
                "DATABASE_URL is required when ENVIRONMENT=production; "
                "the embedded default database is for development only"
            )
        from exportsathi_db.embedded import ensure_default_server  # only when it is needed

        server = ensure_default_server()
        logger.warning(
            "DATABASE_URL is not set: using the embedded PostgreSQL %s with data in %s",
            server.version,
            server.data_dir,
        )
        return server.url("exportsathi")


@asynccontextmanager
async def _unit_of_work(session: AsyncSession, *, commit: bool) -> AsyncIterator[AsyncSession]:
    """Commit (or, read-only, just end) on success; roll back on any error and re-raise it as
    this package's error; always close, returning the connection to the pool."""
    async with session:
        try:
            yield session
            if commit:
                await session.commit()
        except BaseException as exc:
            await _rollback(session)
            error = translate(exc)
            if error is exc:
                raise
            raise error from exc


async def _rollback(session: AsyncSession) -> None:
    """Roll back, shielded so a cancelled task still leaves a clean connection behind."""
    try:
        await asyncio.shield(session.rollback())
    except Exception as exc:  # a lost connection is invalidated by the pool; keep the first error
        logger.debug("rollback failed: %s", type(exc).__name__)


def _check_on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Pre-ping, cheaply. SQLAlchemy's pre-ping costs three round trips per checkout (BEGIN, a
    ping, ROLLBACK); this one costs none for a connection the server has closed (a restart or
    `pg_terminate_backend` closes the socket, which asyncpg notices) or that was used in the
    last PING_AFTER_IDLE_SECONDS, and one round trip after a longer idle spell, in case a
    firewall or failover dropped it silently. A dead connection is replaced transparently.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")
    idle_since = record.info.get("idle_since")
    if idle_since is not None and time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS:
        try:
            dbapi_connection.run_async(lambda conn: conn.execute(";"))
        except Exception as exc:
            raise DisconnectionError("the pooled connection did not answer a ping") from exc


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _check_client_connection(dbapi_connection: Any, _record: Any) -> None:
    """Have the server poll the client's socket during statements (PostgreSQL 14+): when a
    connection is dropped mid-statement (e.g. its task was cancelled again while asyncpg was
    cancelling the statement), the server stops the statement instead of running it to its end.
    """
    if dbapi_connection.driver_connection.get_server_version() >= (14,):
        sql = f"SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}"
        dbapi_connection.run_async(lambda conn: conn.execute(sql))


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4()}__"


async def check_db_connection(
    db: DatabaseConnection | None = None, *, timeout: float = 3.0
) -> bool:
    """True when the database answers `SELECT 1` within `timeout` seconds; never raises."""
    db = db or db_connection
    try:
        async with asyncio.timeout(timeout), db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        logger.info("database check failed: %s", type(exc).__name__)
        return False
    return True


db_connection = DatabaseConnection()
