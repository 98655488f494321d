"""The schema's lifecycle: Alembic migrations run inside the caller's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from alembic import command
from exportsathi_db.database import DatabaseConnection, db_connection
from exportsathi_db.errors import ExportSathiDBError, SchemaVersionError, translate
from exportsathi_db.models import Base

# Serialises concurrent `init` runs against one database (an arbitrary, fixed lock key).
_MIGRATION_LOCK = 7_316_224_001


def migrations_dir() -> Path:
    """Where the Alembic scripts are: inside an installed package, else the repo's `alembic/`."""
    packaged = Path(__file__).parent / "_alembic"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "alembic"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
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


def _check_known(connection: Connection) -> None:
    for revision in MigrationContext.configure(connection).get_current_heads():
        check_known_revision(revision)


def _upgrade(connection: Connection, revision: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    _check_known(connection)
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
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
    and this package's other errors for everything else the driver reports.
    """
    db = db or db_connection
    async with _translated(db), db.engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def downgrade_db(revision: str, db: DatabaseConnection | None = None) -> None:
    db = db or db_connection
    async with _translated(db), db.engine.begin() as conn:
        await conn.run_sync(_downgrade, revision)


async def current_revision(db: DatabaseConnection | None = None) -> str | None:
    """The revision recorded in the database (None before `init`), known here or not."""
    db = db or db_connection
    async with _translated(db), db.engine.connect() as conn:
        return await conn.run_sync(_current)


def _drop(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    Base.metadata.drop_all(connection)
    connection.execute(text("DROP FUNCTION IF EXISTS set_updated_at() CASCADE"))
    connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


async def drop_db(db: DatabaseConnection | None = None) -> None:
    """Remove every table, the trigger function and the Alembic version table."""
    db = db or db_connection
    async with _translated(db), db.engine.begin() as conn:
        await conn.run_sync(_drop)
