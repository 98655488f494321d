"""`python -m exportsathi_db` / `exportsathi-db`: init, check, drop. Messages, not tracebacks."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.embedded import EmbeddedCluster, EmbeddedServerError
from exportsathi_db.errors import DatabaseUnavailableError, ExportSathiDBError, location, translate
from exportsathi_db.migrations import (
    check_known_revision,
    current_revision,
    drop_db,
    head_revision,
    init_db,
    offline_sql,
)
from exportsathi_db.seed import seed


def _where(url: URL) -> str:
    """host:port (or the socket directory) of a URL, never its user or password."""
    return location(url)


async def _init(db: DatabaseConnection, args: argparse.Namespace) -> int:
    if args.sql:  # for review or for psql: no database is connected to
        print(offline_sql(), end="")
        return 0
    before = await current_revision(db)
    await init_db(db)
    head = head_revision()
    where = f"{db.url.database} at {_where(db.url)}"
    if before == head:
        print(f"{where}: already at the latest schema ({head}); nothing to do")
    else:
        print(f"{where}: migrated {before or 'empty database'} -> {head}")
    return 0


_NODE = (
    "SELECT host(inet_server_addr()) AS addr, inet_server_port() AS port,"
    " pg_is_in_recovery() AS standby"
)


async def _check(db: DatabaseConnection, _args: argparse.Namespace) -> int:
    async with db.engine.connect() as conn:
        version = (await conn.execute(text("SHOW server_version"))).scalar_one()
        # Which node answered (a multi-host DATABASE_URL picks one) and whether it is the
        # primary; a unix socket has no address.
        node = (await conn.execute(text(_NODE))).one()
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            await conn.execute(text("SELECT 1"))
            timings.append((time.perf_counter() - start) * 1000)
    current, head = await current_revision(db), head_revision()
    s = db.settings
    print(f"server:    PostgreSQL {version} at {_where(db.url)}, database {db.url.database}")
    address = f"{node.addr}:{node.port}" if node.addr else f"local socket, port {node.port}"
    print(f"node:      {address}, {'a standby' if node.standby else 'the primary'}")
    print(f"latency:   {statistics.median(timings):.2f} ms round trip (median of 5)")
    print(f"schema:    {current or 'none'} (head {head})")
    print(
        f"pool:      size {s.db_pool_size} + overflow {s.db_max_overflow}, "
        f"timeout {s.db_pool_timeout:g} s, recycle {s.db_pool_recycle} s, pre-ping on checkout"
    )
    check_known_revision(current)  # `init` cannot help a revision it does not know
    if current != head:
        print("not at the latest schema: run `python -m exportsathi_db init`", file=sys.stderr)
        return 1
    return 0


async def _drop(db: DatabaseConnection, args: argparse.Namespace) -> int:
    where = f"{db.url.database} at {_where(db.url)}"
    if not args.yes:
        if not sys.stdin.isatty():
            print("refusing to drop without confirmation: pass --yes", file=sys.stderr)
            return 2
        prompt = f"Drop every exportsathi_db table in {where}? Type 'yes': "
        answer = await asyncio.to_thread(input, prompt)
        if answer.strip().lower() != "yes":
            print("nothing dropped")
            return 1
    await drop_db(db)
    print(f"{where}: dropped every table, the trigger function and the migration history")
    return 0


async def _seed(db: DatabaseConnection, args: argparse.Namespace) -> int:
    if args.rows < 1:
        print("--rows must be at least 1", file=sys.stderr)
        return 2
    await init_db(db)
    async with db.engine.begin() as conn:
        summary = await seed(conn, rows=args.rows, progress=not args.quiet)
    counts = ", ".join(f"{n:,} {table}" for table, n in summary.rows.items())
    print(f"{db.url.database} at {_where(db.url)}: seeded {counts}")
    return 0


def _server_status(_args: argparse.Namespace) -> int:
    """pg_ctl's convention: 0 when running, 3 when not."""
    status = EmbeddedCluster().status()
    version = f"PostgreSQL {status.version}" if status.version else "no data yet"
    pid = f", pid {status.pid}" if status.pid else ""
    print(f"embedded server: {status.state} ({version}{pid})")
    print(f"data:   {status.data_dir}")
    print(f"socket: {status.socket_dir} (port {status.port})")
    print(f"log:    {status.log_file}")
    if os.environ.get("DATABASE_URL"):
        print("note:   DATABASE_URL is set, so the package does not use this server")
    return 0 if status.running else 3


def _server_stop(_args: argparse.Namespace) -> int:
    cluster = EmbeddedCluster()
    if not cluster.status().running:
        print(f"embedded server in {cluster.data_dir}: not running")
        return 0
    cluster.stop()
    print(f"embedded server in {cluster.data_dir}: stopped")
    return 0


def _server_reset(args: argparse.Namespace) -> int:
    cluster = EmbeddedCluster()
    if not args.yes:
        print(
            f"refusing to delete {cluster.data_dir} and all its data without --yes",
            file=sys.stderr,
        )
        return 2
    cluster.reset()
    print(f"embedded server in {cluster.data_dir}: deleted; the next command creates it anew")
    return 0


# The embedded default server's own commands: they never connect to DATABASE_URL.
SERVER_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "status": (_server_status, "show the embedded server: running or not, version, paths"),
    "stop": (_server_stop, "stop the embedded server (it starts again on next use)"),
    "reset": (_server_reset, "stop the embedded server and delete its data (needs --yes)"),
}

Command = Callable[[DatabaseConnection, argparse.Namespace], Awaitable[int]]
COMMANDS: dict[str, tuple[Command, str]] = {
    "init": (_init, "migrate the database to the latest schema (idempotent)"),
    "check": (_check, "show server, latency, schema revision and pool; exit 1 unless at head"),
    "drop": (_drop, "remove every table (asks for confirmation)"),
    "seed": (_seed, "add realistic demo data (about ROWS reports + chat messages)"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exportsathi-db",
        description="ExportSathi database tool. Uses DATABASE_URL, or the embedded default.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {name: text for name, (_, text) in (COMMANDS | SERVER_COMMANDS).items()}
    for name, help_text in helps.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == "init":
            command.add_argument(
                "--sql",
                action="store_true",
                help="print the SQL from an empty database to the latest schema; connect nowhere",
            )
        if name in ("drop", "reset"):
            command.add_argument("--yes", action="store_true", help="do not ask")
        if name == "seed":
            command.add_argument("--rows", type=int, default=10_000, help="default 10000")
            command.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _failure(error: BaseException, db: DatabaseConnection) -> str:
    """One line for the user: what went wrong and where, never a password or a traceback."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        if not first["loc"]:  # a rule across settings (a model validator)
            return f"invalid settings: {first['msg'].removeprefix('Value error, ')}"
        return f"invalid setting {str(first['loc'][0]).upper()}: {first['msg']}"
    if isinstance(error, EmbeddedServerError):
        return str(error)
    try:
        url: URL | None = db.url  # parsed and checked: its host holds no userinfo
    except Exception:  # the settings themselves are the problem (reported below)
        url = None
    translated = translate(error, url=url)
    where = _where(url) if url is not None else "the configured database"
    if isinstance(error, OSError) and isinstance(translated, DatabaseUnavailableError):
        reason = error.strerror or ("no answer" if isinstance(error, TimeoutError) else "")
        return f"cannot connect to PostgreSQL at {where}: {reason or type(error).__name__}"
    if isinstance(translated, ExportSathiDBError):
        return str(translated)
    return f"{type(error).__name__} talking to PostgreSQL at {where}"


async def _run(args: argparse.Namespace) -> int:
    db = DatabaseConnection()
    command, _ = COMMANDS[args.command]
    try:
        return await command(db, args)
    except Exception as error:
        print(f"error: {_failure(error, db)}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # DB_ECHO: SQLAlchemy prints statements with its own handler; not again through root's.
    logging.getLogger("sqlalchemy.engine.Engine").propagate = False
    args = _parser().parse_args(argv)
    if args.command in SERVER_COMMANDS:
        try:
            return SERVER_COMMANDS[args.command][0](args)
        except EmbeddedServerError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
