"""Alembic environment: async, and able to share a connection from a running event loop.

`init_db()` passes its own connection (`config.attributes["connection"]`), already in its
migration transaction (advisory lock, lock_timeout, statement_timeout: see
exportsathi_db.migrations), so migrations run inside the caller's loop via
`connection.run_sync`. The `alembic` command line has no loop of its own, so only there an
engine is created and run with `asyncio.run`, through the same retrying migration runner.
With `--sql` (offline mode) nothing is connected to: the SQL is printed for review, wrapped
in the same advisory lock and timeouts.
"""

from __future__ import annotations

import asyncio
import logging.config

from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from alembic import context
from exportsathi_db.config import get_settings
from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import ExportSathiDBError, translate
from exportsathi_db.migrations import MIGRATION_LOCK_SQL, run_migration, timeout_statements
from exportsathi_db.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("connection") is None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: the SQL on standard output, for review or for psql.

    One transaction (BEGIN … COMMIT), as online: the advisory lock that serialises
    migrations, then the migration timeouts of the settings, so a run through psql cannot
    hold up the application's queries either (it fails instead; run it again)."""
    context.configure(
        dialect_name="postgresql",
        target_metadata=target_metadata,
        literal_binds=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.execute(MIGRATION_LOCK_SQL)
        for statement in timeout_statements(get_settings()):
            context.execute(statement)
        context.run_migrations()


async def run_async_migrations() -> None:
    """The `alembic` command line's own engine, through the retrying migration runner. Its
    errors become a CommandError, which that command line prints as one `FAILED: …` line (a
    missing database, TLS refused, a bad DATABASE_URL, a table lock not granted …) instead
    of a traceback."""
    db = DatabaseConnection()
    try:
        await run_migration(db, run_migrations)
    except Exception as exc:
        error = translate(exc, url=_url(db))
        if isinstance(error, ExportSathiDBError):
            raise CommandError(str(error)) from exc
        raise
    finally:
        await db.dispose()


def _url(db: DatabaseConnection) -> URL | None:
    try:
        return db.url
    except Exception:  # the settings themselves are the problem
        return None


def main() -> None:
    if context.is_offline_mode():
        run_migrations_offline()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run_async_migrations())
    else:
        raise RuntimeError(
            "Alembic was called inside a running event loop without a connection: "
            "use `await exportsathi_db.init_db()` (it shares its connection)"
        )


main()
