"""Alembic environment: async, and able to share a connection from a running event loop.

`init_db()` passes its own connection (`config.attributes["connection"]`), so migrations run
inside the caller's loop via `connection.run_sync`. The `alembic` command line has no loop
of its own, so only there an engine is created and run with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import logging.config

from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from alembic import context
from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import ExportSathiDBError, translate
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


async def run_async_migrations() -> None:
    """The `alembic` command line's own engine. Its errors become a CommandError, which that
    command line prints as one `FAILED: …` line (a missing database, TLS refused, a bad
    DATABASE_URL …) instead of a traceback."""
    db = DatabaseConnection()
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(run_migrations)
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
        raise SystemExit("offline (--sql) migrations are not supported; run against a database")
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
