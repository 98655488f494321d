"""The schema's lifecycle: Alembic migrations run inside the caller's event loop.

Every migration (`init_db`, `downgrade_db`, `drop_db`, and the `alembic` command line through
env.py) runs in one transaction (PostgreSQL's DDL is transactional) that takes the migration
advisory lock, then bounds itself with `SET LOCAL lock_timeout` and `statement_timeout`
(DB_MIGRATION_LOCK_TIMEOUT_MS, DB_MIGRATION_STATEMENT_TIMEOUT_MS).

Why the lock timeout: a DDL statement waiting for its ACCESS EXCLUSIVE lock (behind, say, an
open transaction that read the table) makes every later query of that table queue behind it,
so without a bound one idle transaction stalls the whole application for as long as it stays
open. With it, the migration gives up after the timeout, its transaction rolls back (nothing
changed), the queued queries go on, and the whole transaction is tried again after a pause,
up to DB_MIGRATION_LOCK_RETRIES times. The last failure is a MigrationLockTimeoutError that
names the blocking sessions, seen from a second connection while the migration waited.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from alembic import command
from exportsathi_db.config import Settings
from exportsathi_db.database import DatabaseConnection, db_connection
from exportsathi_db.errors import (
    ConfigurationError,
    ExportSathiDBError,
    QueryTimeoutError,
    SchemaVersionError,
    translate,
)
from exportsathi_db.models import Base

logger = logging.getLogger("exportsathi_db")

# Serialises concurrent migrations against one database (an arbitrary, fixed lock key).
MIGRATION_LOCK = 7_316_224_001
# Taken first, with no timeout: waiting for another migration holds no table lock, so no
# query of the application queues behind it.
MIGRATION_LOCK_SQL = f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
# The longest pause between two attempts, whatever the lock timeout.
MAX_BACKOFF_SECONDS = 10.0

_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired (or NOWAIT)
_DEADLOCK = "40P01"  # the server broke a lock cycle by ending this transaction
_QUERY_CANCELED = "57014"  # statement_timeout expired (or pg_cancel_backend)

# Who blocks the migration's backend right now: pg_blocking_pids() lists the sessions that
# hold (or wait ahead of it for) a lock it waits for.
_BLOCKERS_SQL = text(
    """
    SELECT a.pid, coalesce(a.application_name, '') AS application_name,
           coalesce(a.state, '') AS state,
           extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.backend_start))
               ::float8 AS seconds,
           coalesce(a.query, '') AS query
    FROM pg_stat_activity AS a
    WHERE a.pid = ANY (SELECT unnest(pg_blocking_pids(:pid)))
    ORDER BY a.xact_start NULLS LAST, a.pid
    """
)


@dataclass(frozen=True)
class Blocker:
    """A session holding a lock the migration waited for (from pg_stat_activity)."""

    pid: int
    application_name: str
    state: str  # e.g. "idle in transaction", "active"
    seconds: float  # how long its transaction had been open when it was seen
    query: str  # the first line of its current (or, when idle, last) statement, shortened

    def __str__(self) -> str:
        name = repr(self.application_name) if self.application_name else "none"
        return (
            f"pid {self.pid} (application_name {name}, {self.state or 'state unknown'}, "
            f"transaction open {self.seconds:.1f} s, query: {self.query or 'unknown'})"
        )


class MigrationLockTimeoutError(QueryTimeoutError):
    """A migration could not get a table lock within DB_MIGRATION_LOCK_TIMEOUT_MS (or was
    ended by the server's deadlock detector) in every one of its attempts. Nothing was
    changed (its transaction rolled back). `blockers` are the sessions that held the lock,
    as last seen while the migration waited (empty if none was seen); retry once they have
    finished."""

    def __init__(
        self,
        message: str,
        *,
        blockers: tuple[Blocker, ...],
        attempts: int,
        statement: str,
    ) -> None:
        super().__init__(message)
        self.blockers = blockers
        self.attempts = attempts
        self.statement = statement


def migrations_dir() -> Path:
    """Where the Alembic scripts are: inside an installed package, else the repo's `alembic/`."""
    packaged = Path(__file__).parent / "_alembic"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "alembic"


def alembic_config(
    connection: Connection | None = None, *, output: io.StringIO | None = None
) -> Config:
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> set[str]:
    """Every revision id of this checkout's migrations (exact ids, no prefixes)."""
    script = ScriptDirectory.from_config(alembic_config())
    return {script_revision.revision for script_revision in script.walk_revisions()}


def check_known_revision(revision: str | None) -> None:
    """Raise SchemaVersionError if the database records a revision these migrations lack:
    the database was migrated by a newer (or a different) version of exportsathi_db, and
    no migration here can move it anywhere."""
    if revision is None or revision in known_revisions():
        return
    try:
        ours = f"exportsathi_db {version('exportsathi_db')}"
    except PackageNotFoundError:
        ours = "this exportsathi_db"
    raise SchemaVersionError(
        f"the database is at schema revision {revision!r}, which {ours} does not know (its "
        f"latest is {head_revision()!r}): it was migrated by a newer (or a different) version "
        "of exportsathi_db. Upgrade the exportsathi_db package to that version, or restore a "
        "backup made with this one, or start over: `python -m exportsathi_db drop` (deletes "
        "every table and its data), then `init`",
        revision=revision,
    )


def timeout_statements(settings: Settings) -> list[str]:
    """The SET LOCAL statements that bound a migration transaction (also in the offline SQL)."""
    return [
        f"SET LOCAL lock_timeout = '{settings.db_migration_lock_timeout_ms}ms'",
        f"SET LOCAL statement_timeout = '{settings.db_migration_statement_timeout_ms}ms'",
    ]


def begin_migration(connection: Connection, settings: Settings) -> None:
    """The start of every migration transaction: the advisory lock, then the timeouts."""
    connection.execute(text(MIGRATION_LOCK_SQL))
    for statement in timeout_statements(settings):
        connection.execute(text(statement))


def _one_line(sql: object, limit: int = 100) -> str:
    """The first non-blank line of a statement, shortened: enough to recognise it."""
    lines = [line.strip() for line in str(sql or "").splitlines() if line.strip()]
    first = lines[0] if lines else ""
    more = len(lines) > 1 or len(first) > limit
    return first[:limit] + (" …" if more else "")


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps: SQLAlchemy's DBAPIError, its adapter's error, asyncpg's."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found and len(found) < 5:
        found.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return found


def _sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error, however wrapped."""
    for link in _chain(error):
        state = getattr(link, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
    return None


def _statement(error: BaseException) -> str:
    """The first line of the statement that failed (SQLAlchemy's DBAPIError knows it)."""
    for link in _chain(error):
        if isinstance(link, sa_exc.StatementError) and link.statement:
            return _one_line(link.statement)
    return "a statement"


def _backoff(attempt: int, settings: Settings) -> float:
    """The pause after failed attempt `attempt` (1, 2, ...): a quarter of the lock timeout,
    doubling; the queued queries drain meanwhile and the blocker may finish."""
    base = max(settings.db_migration_lock_timeout_ms / 4000, 0.05)
    return float(min(base * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))


def _poll_interval(settings: Settings) -> float:
    """How often the watch looks for blockers: at least four times per lock timeout."""
    lock_timeout = settings.db_migration_lock_timeout_ms / 1000
    return min(0.25, max(lock_timeout / 4, 0.02)) if lock_timeout else 0.25


class _BlockerWatch:
    """While a migration attempt runs, polls on a connection of its own which sessions block
    the migration's backend; keeps the last non-empty answer.

    The blockers can only be asked for while the migration waits: once its lock times out
    it waits for nothing. The connection is opened after the first interval, so a migration
    that is not held up never opens it; a failure here never fails the migration.
    """

    def __init__(self, db: DatabaseConnection, pid: int, interval: float) -> None:
        self.blockers: tuple[Blocker, ...] = ()
        self._db, self._pid, self._interval = db, pid, interval
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _stopped_after(self, seconds: float) -> bool:
        with suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()

    async def _run(self) -> None:
        if await self._stopped_after(self._interval):
            return
        try:
            # A bounded checkout: a pool with no free connection must not hold up the end.
            async with asyncio.timeout(max(self._interval, 0.1) * 4):
                conn = await self._db.engine.connect().start()
        except Exception as exc:
            logger.debug("no connection to look for migration blockers: %r", exc)
            return
        try:
            # Autocommit: a transaction would freeze pg_stat_activity at its first read.
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            while True:
                await self._poll(autocommit)
                if await self._stopped_after(self._interval):
                    return
        except Exception as exc:
            logger.debug("looking for migration blockers failed: %r", exc)
        finally:
            await conn.close()

    async def _poll(self, conn: AsyncConnection) -> None:
        rows = (await conn.execute(_BLOCKERS_SQL, {"pid": self._pid})).all()
        if rows:
            self.blockers = tuple(
                Blocker(int(r.pid), r.application_name, r.state, r.seconds, _one_line(r.query, 80))
                for r in rows
            )

    async def stop(self) -> tuple[Blocker, ...]:
        self._stop.set()
        await asyncio.shield(self._task)
        return self.blockers


def _describe(blockers: tuple[Blocker, ...]) -> str:
    if not blockers:
        return (
            "blocked by a session not seen in time (while it waits, "
            "SELECT * FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids(<its pid>)) "
            "names it)"
        )
    shown = "; ".join(str(b) for b in blockers[:3])
    more = f"; and {len(blockers) - 3} more" if len(blockers) > 3 else ""
    return f"blocked by {shown}{more}"


def _waited(deadlock: bool, s: Settings) -> str:
    if deadlock:
        return "was ended by the server's deadlock detector"
    return f"waited DB_MIGRATION_LOCK_TIMEOUT_MS ({s.db_migration_lock_timeout_ms} ms)"


def _lock_timeout_error(
    statement: str,
    blockers: tuple[Blocker, ...],
    attempts: int,
    elapsed: float,
    s: Settings,
    *,
    deadlock: bool,
) -> MigrationLockTimeoutError:
    if blockers:
        pids = ", ".join(str(b.pid) for b in blockers[:3])
        what = (
            f"End that transaction (commit or roll it back, or SELECT pg_terminate_backend(pid) "
            f"for pid {pids}) and run the migration again"
        )
    else:
        what = "Run the migration again when the database is quieter"
    message = (
        f"the migration could not get a table lock: `{statement}` {_waited(deadlock, s)} "
        f"{'in the last' if deadlock else 'in each'} of {attempts} "
        f"attempt{'s' if attempts > 1 else ''} ({elapsed:.1f} s in all), "
        f"{_describe(blockers)}. Nothing was changed. {what}"
    )
    return MigrationLockTimeoutError(
        message, blockers=blockers, attempts=attempts, statement=statement
    )


def _statement_timeout_error(
    statement: str, blockers: tuple[Blocker, ...], s: Settings
) -> QueryTimeoutError:
    waiting = f"; it was waiting for a lock, {_describe(blockers)}" if blockers else ""
    return QueryTimeoutError(
        f"a migration statement was cancelled: `{statement}` ran past "
        f"DB_MIGRATION_STATEMENT_TIMEOUT_MS ({s.db_migration_statement_timeout_ms} ms), or was "
        f"cancelled by an administrator{waiting}. Nothing was changed. If it needs longer, "
        "raise DB_MIGRATION_STATEMENT_TIMEOUT_MS for this run (0: no limit)"
    )


def check_timeouts(s: Settings) -> None:
    """Refuse migration timeouts that cannot work together (ConfigurationError)."""
    lock_ms, statement_ms = s.db_migration_lock_timeout_ms, s.db_migration_statement_timeout_ms
    if lock_ms and statement_ms and lock_ms >= statement_ms:
        raise ConfigurationError(
            "DB_MIGRATION_LOCK_TIMEOUT_MS must be shorter than DB_MIGRATION_STATEMENT_TIMEOUT_MS: "
            "a lock wait would end as a statement timeout, which is not retried"
        )
    command_timeout = s.db_command_timeout  # the client's own limit, in seconds
    if command_timeout is not None and not 0 < statement_ms < command_timeout * 1000:
        raise ConfigurationError(
            "DB_MIGRATION_STATEMENT_TIMEOUT_MS must be shorter than DB_COMMAND_TIMEOUT: the "
            "client would give up on a slow migration statement before the server stops it "
            "with a clear error; for a long migration raise both"
        )


async def run_migration(db: DatabaseConnection, work: Callable[[Connection], None]) -> None:
    """Run `work(connection)` in one migration transaction (advisory lock, timeouts), trying
    the whole transaction again after a lock timeout or a deadlock; raises
    MigrationLockTimeoutError after the last attempt, QueryTimeoutError after a statement
    timeout."""
    s = db.settings
    check_timeouts(s)
    attempts = s.db_migration_lock_retries + 1
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        blockers: tuple[Blocker, ...] = ()
        try:
            async with db.engine.begin() as conn:
                pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                watch = _BlockerWatch(db, pid, _poll_interval(s))
                try:
                    await conn.run_sync(_migration_transaction, work, s)
                finally:
                    blockers = await watch.stop()
            return
        except Exception as exc:
            state = _sqlstate(exc)
            if state == _QUERY_CANCELED:
                raise _statement_timeout_error(_statement(exc), blockers, s) from exc
            if state not in (_LOCK_NOT_AVAILABLE, _DEADLOCK):
                raise
            deadlock, statement = state == _DEADLOCK, _statement(exc)
            if attempt == attempts:
                elapsed = time.monotonic() - started
                raise _lock_timeout_error(
                    statement, blockers, attempts, elapsed, s, deadlock=deadlock
                ) from exc
            pause = _backoff(attempt, s)
            logger.warning(
                "migration attempt %d of %d: `%s` %s, %s; rolled back, trying again in %.2f s",
                attempt,
                attempts,
                statement,
                _waited(deadlock, s),
                _describe(blockers),
                pause,
            )
            await asyncio.sleep(pause)


def _migration_transaction(
    connection: Connection, work: Callable[[Connection], None], settings: Settings
) -> None:
    begin_migration(connection, settings)
    work(connection)


def _check_known(connection: Connection) -> None:
    for revision in MigrationContext.configure(connection).get_current_heads():
        check_known_revision(revision)


def _upgrade(connection: Connection, revision: str) -> None:
    _check_known(connection)
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    _check_known(connection)
    command.downgrade(alembic_config(connection), revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@asynccontextmanager
async def _translated(db: DatabaseConnection) -> AsyncIterator[None]:
    """Re-raise driver errors as this package's errors (naming the server and database)."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, ExportSathiDBError):
            raise
        try:
            url: URL | None = db.url  # the engine exists: the error came from using it
        except Exception:
            url = None
        error = translate(exc, url=url)
        if error is exc:
            raise
        raise error from exc


async def init_db(db: DatabaseConnection | None = None, *, revision: str = "head") -> None:
    """Migrate the database to the latest schema (idempotent; never `create_all`).

    Raises SchemaVersionError when the database is at a revision these migrations lack,
    MigrationLockTimeoutError when a table stayed locked by other sessions through every
    attempt, and this package's other errors for everything else the driver reports.
    """
    db = db or db_connection
    async with _translated(db):
        await run_migration(db, partial(_upgrade, revision=revision))


async def downgrade_db(revision: str, db: DatabaseConnection | None = None) -> None:
    db = db or db_connection
    async with _translated(db):
        await run_migration(db, partial(_downgrade, revision=revision))


async def current_revision(db: DatabaseConnection | None = None) -> str | None:
    """The revision recorded in the database (None before `init`), known here or not."""
    db = db or db_connection
    async with _translated(db), db.engine.connect() as conn:
        return await conn.run_sync(_current)


def offline_sql(revision: str = "head") -> str:
    """The SQL `init_db` would run from an empty database to `revision`, as text for review
    (Alembic's offline mode); no database is connected to."""
    output = io.StringIO()
    command.upgrade(alembic_config(output=output), revision, sql=True)
    return output.getvalue()


def _drop(connection: Connection) -> None:
    Base.metadata.drop_all(connection)
    connection.execute(text("DROP FUNCTION IF EXISTS set_updated_at() CASCADE"))
    connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


async def drop_db(db: DatabaseConnection | None = None) -> None:
    """Remove every table, the trigger function and the Alembic version table."""
    db = db or db_connection
    async with _translated(db):
        await run_migration(db, _drop)
