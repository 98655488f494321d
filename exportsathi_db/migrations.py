"""The schema's lifecycle: Alembic migrations run inside the caller's event loop."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from alembic import command
from exportsathi_db.database import DatabaseConnection, db_connection
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


def _upgrade(connection: Connection, revision: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    command.downgrade(alembic_config(connection), revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def init_db(db: DatabaseConnection | None = None, *, revision: str = "head") -> None:
    """Migrate the database to the latest schema (idempotent; never `create_all`)."""
    async with (db or db_connection).engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def downgrade_db(revision: str, db: DatabaseConnection | None = None) -> None:
    async with (db or db_connection).engine.begin() as conn:
        await conn.run_sync(_downgrade, revision)


async def current_revision(db: DatabaseConnection | None = None) -> str | None:
    async with (db or db_connection).engine.connect() as conn:
        return await conn.run_sync(_current)


def _drop(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    Base.metadata.drop_all(connection)
    connection.execute(text("DROP FUNCTION IF EXISTS set_updated_at() CASCADE"))
    connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


async def drop_db(db: DatabaseConnection | None = None) -> None:
    """Remove every table, the trigger function and the Alembic version table."""
    async with (db or db_connection).engine.begin() as conn:
        await conn.run_sync(_drop)
