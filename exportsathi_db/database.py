"""DatabaseConnection: the engines (primary, replica) of one event loop, their session
factories and the two units of work; nothing is created at import."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from exportsathi_db.config import Settings, get_settings
from exportsathi_db.credentials import PasswordProvider
from exportsathi_db.engine import create_engine
from exportsathi_db.errors import ConfigurationError, translate
from exportsathi_db.observability.pool import PoolStatus, pool_status
from exportsathi_db.retry import backoff_delay, should_retry
from exportsathi_db.unit_of_work import UnitSession, unit_of_work

logger = logging.getLogger("exportsathi_db")

T = TypeVar("T")

# After a failed replica checkout, reads go to the primary for this long before retrying.
REPLICA_RETRY_SECONDS = 5


class DatabaseConnection:
    """An engine and session factory built on first use, from a URL or from settings.

    `db_connection` is the process-wide default; build more of these for tests or other
    databases. An engine belongs to the event loop it was first used on: once that loop has
    finished (a script calling `asyncio.run` twice, a notebook, a test runner), the next use
    from a new loop builds a new engine; using one from two running loops at once is an error.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        read_url: str | URL | None = None,
        settings: Settings | None = None,
        password: PasswordProvider | None = None,
    ) -> None:
        """`password`: a callable (sync or async) asked for the password each time a new
        connection is opened (rotating passwords, IAM tokens); overrides the URL's password
        and DB_PASSWORD_COMMAND, for the replica too."""
        self._url = url
        self._read_url = read_url
        self._settings = settings
        self._password = password
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
            if not self._loop.is_closed():
                raise ConfigurationError(
                    "this DatabaseConnection is in use by another running event loop: its "
                    "pooled asyncpg connections cannot be used here. Use one per loop"
                )
            self._forget_closed_loop()
            self._loop = loop

    def _forget_closed_loop(self) -> None:
        """Drop the engines of a loop that has finished. Their connections cannot be closed
        politely without that loop; dropping them closes their sockets (the server then
        ends those sessions, rolling back nothing: they were idle)."""
        for engine in (self._engine, self._replica):
            if engine is not None:
                engine.sync_engine.dispose(close=False)
        self._engine = self._replica = None
        self._session_factory, self._read_factories = None, {}
        gc.collect()  # the sockets sit in reference cycles of the dead loop's transports

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        self._check_loop()  # the cached factory must not bypass the event-loop guard
        if self._session_factory is None:
            self._session_factory = async_sessionmaker(
                self.engine, expire_on_commit=False, sync_session_class=UnitSession
            )
        return self._session_factory

    @asynccontextmanager
    async def session_scope(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back and re-raise on error, always close."""
        cleanup = self.settings.db_cleanup_timeout
        async with unit_of_work(self.session_factory(), cleanup_timeout=cleanup) as session:
            yield session

    async def run(
        self,
        fn: Callable[[AsyncSession], Awaitable[T]],
        *,
        retries: int = 6,
        idempotent: bool = False,
    ) -> T:
        """`await fn(session)` in a unit of work of its own (`session_scope()`), committed when
        it returns; its result. A retryable failure (see `exportsathi_db.retry`: connection
        lost before COMMIT, no answer within DB_COMMAND_TIMEOUT, a standby, a serialization
        failure or deadlock) runs `fn` again in a fresh unit of work, up to `retries` more
        times, after a full-jitter exponential backoff (DB_RETRY_BACKOFF_BASE, _CAP). Any
        other error is raised at once; after the last attempt, the last error. The defaults
        (6 retries, backoff ceilings 0.1, 0.2, … 2 s: up to 5.1 s of waiting) outlast a
        planned Patroni switchover (~2 s measured); pass more for an unplanned failover.

        `fn` may run more than once: it must do everything through `session` (no side effects
        elsewhere that a retry would repeat). A `CommitOutcomeUnknownError` (the connection
        died during COMMIT: it may have committed) is retried only with `idempotent=True`,
        i.e. when running `fn` twice does no harm (e.g. an upsert on a key you chose).
        """
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        s = self.settings
        name = getattr(fn, "__qualname__", type(fn).__name__)
        retry = 0
        while True:
            try:
                async with self.session_scope() as session:
                    result = await fn(session)
                return result
            except Exception as exc:
                if retry >= retries or not should_retry(exc, idempotent=idempotent):
                    if retry:
                        exc.add_note(f"(after {retry + 1} attempts of the unit of work)")
                    raise
                retry += 1
                delay = backoff_delay(
                    retry, base=s.db_retry_backoff_base, cap=s.db_retry_backoff_cap
                )
                logger.info(
                    "unit of work %s failed (%s); retry %d of %d in %.3f s",
                    name,
                    type(exc).__name__,
                    retry,
                    retries,
                    delay,
                )
            await asyncio.sleep(delay)

    @asynccontextmanager
    async def read_scope(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work: on the replica (`DATABASE_READ_URL`) if there is one and it
        answers, else on the primary. Writes inside it raise `ReadOnlyError`.

        A replica lags the primary: read your own writes from `session_scope()` instead.
        """
        cleanup = self.settings.db_cleanup_timeout
        session = await self._read_session()
        async with unit_of_work(session, commit=False, cleanup_timeout=cleanup) as session:
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
                    url = raw if isinstance(raw, (str, URL)) else raw.get_secret_value()
                    self._replica = create_engine(url, self.settings, password=self._password)
                engine = self._replica
            # BEGIN READ ONLY: the server itself refuses writes in these sessions.
            bind = engine.execution_options(postgresql_readonly=True)
            self._read_factories[replica] = async_sessionmaker(
                bind, expire_on_commit=False, sync_session_class=UnitSession
            )
        return self._read_factories[replica]

    def pool_status(self) -> dict[str, PoolStatus]:
        """The pools built so far, now, by role (`primary`, `replica`): size, checked out,
        idle, overflow, and the waits for a connection. Builds nothing; safe to call from
        another thread (e.g. a metrics exporter's)."""
        engines = {"primary": self._engine, "replica": self._replica}
        return {role: pool_status(e) for role, e in engines.items() if e is not None}

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

    def _create_engine(self) -> AsyncEngine:
        # an explicit "" is a bad URL, not "use the configured one"
        url = self._url if self._url is not None else self._configured_url()
        return create_engine(url, self.settings, password=self._password)

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
