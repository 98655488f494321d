"""`python -m exportsathi_db` as a user runs it: real processes, real databases, exit codes."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.migrations import head_revision
from tests.helpers import CANARY, free_port
from tests.rows import ALL_TABLES, UPDATED_AT_TABLES

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
EmptyDatabase = Callable[[], Awaitable[URL]]


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def printed(self) -> str:
        return self.out + self.err


async def run(
    *args: str, url: URL | str | None, cwd: Path, module: str = "exportsathi_db", **env: str
) -> Run:
    """Run `python -m <module> args` with DATABASE_URL=url and no other DB settings."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_", "ENVIRON"))
    }
    if url is not None:
        raw = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        environment["DATABASE_URL"] = raw
    start = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=cwd,  # no .env here
        env=environment | env,
        stdin=asyncio.subprocess.DEVNULL,  # not a terminal
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode(), time.monotonic() - start)


async def tables(url: URL) -> set[str]:
    db = DatabaseConnection(url)
    try:
        async with db.engine.connect() as conn:
            sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            return set((await conn.execute(text(sql))).scalars())
    finally:
        await db.dispose()


def one_clean_error_line(result: Run) -> str:
    """A failure: non-zero exit, one line on stderr, no traceback, no password."""
    assert result.code != 0, result
    assert "Traceback" not in result.printed
    assert CANARY not in result.printed
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


async def test_init_twice_then_check(empty_database: EmptyDatabase, tmp_path: Path) -> None:
    url = await empty_database()
    first = await run("init", url=url, cwd=tmp_path)
    assert (first.code, first.err) == (0, ""), first
    assert f"migrated empty database -> {head_revision()}" in first.out
    assert len(await tables(url)) == 11

    second = await run("init", url=url, cwd=tmp_path)
    assert (second.code, second.err) == (0, ""), second
    assert "nothing to do" in second.out

    check = await run("check", url=url, cwd=tmp_path)
    assert (check.code, check.err) == (0, ""), check
    for expected in (
        "server:    PostgreSQL ",
        f"127.0.0.1:{url.port}",
        f"node:      127.0.0.1:{url.port}, the primary",
        "latency:",
        " ms round trip",
        f"schema:    {head_revision()} (head {head_revision()})",
        "pool:      size 10 + overflow 20",
    ):
        assert expected in check.out


async def test_check_before_init_fails(empty_database: EmptyDatabase, tmp_path: Path) -> None:
    result = await run("check", url=await empty_database(), cwd=tmp_path)
    assert result.code != 0
    assert "schema:    none" in result.out
    assert "run `python -m exportsathi_db init`" in result.err


async def test_check_against_a_dead_server(database_url: URL, tmp_path: Path) -> None:
    port = free_port()
    result = await run("check", url=database_url.set(port=port, password=CANARY), cwd=tmp_path)
    line = one_clean_error_line(result)
    assert f"127.0.0.1:{port}" in line and "cannot connect" in line
    assert result.seconds < 5  # interpreter start-up included; a refused port answers at once


async def test_check_with_a_wrong_password(database_url: URL, tmp_path: Path) -> None:
    result = await run("check", url=database_url.set(password=CANARY), cwd=tmp_path)
    assert "refused the login" in one_clean_error_line(result)


BAD_CONFIGURATION = [
    (f"mysql://app:{CANARY}@127.0.0.1/app", {}, "must be a PostgreSQL URL"),
    ("this is not a url", {}, "not a valid URL"),
    (f"postgresql://app:{CANARY}@127.0.0.1/app", {"DB_POOL_SIZE": "abc"}, "DB_POOL_SIZE"),
]


async def test_bad_configuration_is_one_clear_line(tmp_path: Path) -> None:
    cases = [(command, *case) for command in ("check", "init") for case in BAD_CONFIGURATION]
    results = await asyncio.gather(
        *(run(command, url=url, cwd=tmp_path, **env) for command, url, env, _ in cases)
    )
    for (command, _url, _env, message), result in zip(cases, results, strict=True):
        assert message in one_clean_error_line(result), (command, message)


async def test_a_missing_database_is_named_with_what_to_do(
    database_url: URL, tmp_path: Path
) -> None:
    name = f"no_such_db_{uuid.uuid4().hex[:8]}"
    url = database_url.set(database=name)
    for command in ("check", "init"):
        result = await run(command, url=url, cwd=tmp_path)
        line = one_clean_error_line(result)
        assert f'error: the database "{name}" does not exist at 127.0.0.1:{url.port}: ' in line
        assert (
            f'CREATE DATABASE "{name}"' in line and "fix the database name in DATABASE_URL" in line
        )
        assert "init` creates the tables, not the database" in line
        assert url.password is not None and url.password not in result.printed


async def test_sslmode_require_against_a_server_without_tls(
    database_url: URL, tmp_path: Path
) -> None:
    """The test server has no TLS: `require` is a configuration error, said as such."""
    url = database_url.update_query_dict({"sslmode": "require"})
    line = one_clean_error_line(await run("check", url=url, cwd=tmp_path))
    assert f"the server at 127.0.0.1:{url.port} does not support TLS (SSL) connections" in line
    assert "cannot connect" not in line and "sslmode" in line


async def test_an_unescaped_at_in_the_password_shows_no_part_of_it(
    database_url: URL, tmp_path: Path
) -> None:
    """`S3cr3t@PWpiece` unescaped would make `PWpiece@127.0.0.1` the host, and be printed."""
    raw = f"postgresql://postgres:S3cr3t@PWpiece@127.0.0.1:{database_url.port}/db"
    cases = [(command, raw, {}) for command in ("check", "init")]
    cases.append(("check", database_url, {"DATABASE_READ_URL": raw}))
    for command, url, env in cases:
        result = await run(command, url=url, cwd=tmp_path, **env)
        line = one_clean_error_line(result)
        setting = "DATABASE_READ_URL" if env else "DATABASE_URL"
        assert line.startswith(f"error: {setting} has more than one '@'"), line
        assert "must be percent-encoded ('@' as %40" in line and "urllib.parse.quote" in line
        assert "S3cr3t" not in result.printed and "PWpiece" not in result.printed


UNKNOWN_REVISION = "9f8e7d6c5b4a"


async def test_a_revision_this_version_does_not_know(
    empty_database: EmptyDatabase, tmp_path: Path
) -> None:
    url = await empty_database()
    assert (await run("init", url=url, cwd=tmp_path)).code == 0
    db = DatabaseConnection(url)
    try:
        async with db.engine.begin() as conn:
            sql = text("UPDATE alembic_version SET version_num = :v")
            await conn.execute(sql, {"v": UNKNOWN_REVISION})
    finally:
        await db.dispose()

    for command in ("init", "check"):
        result = await run(command, url=url, cwd=tmp_path)
        line = one_clean_error_line(result)
        assert f"error: the database is at schema revision '{UNKNOWN_REVISION}'" in line
        assert f"does not know (its latest is '{head_revision()}')" in line
        assert "migrated by a newer (or a different) version of exportsathi_db" in line
        assert "Upgrade the exportsathi_db package" in line and "exportsathi_db drop" in line
        assert "run `python -m exportsathi_db init`" not in result.printed
    assert len(await tables(url)) == 11  # nothing was touched


async def test_bad_usage_is_refused_without_traceback(tmp_path: Path) -> None:
    usages = [(), ("migrate",), ("init", "--force"), ("check", "extra"), ("drop", "--all")]
    results = await asyncio.gather(
        *(run(*args, url="postgresql://u@127.0.0.1/app", cwd=tmp_path) for args in usages)
    )
    for args, result in zip(usages, results, strict=True):
        assert result.code == 2, args
        assert "usage:" in result.err and "Traceback" not in result.printed


async def test_drop(empty_database: EmptyDatabase, tmp_path: Path) -> None:
    url = await empty_database()
    assert (await run("init", url=url, cwd=tmp_path)).code == 0
    refused = await run("drop", url=url, cwd=tmp_path)  # stdin is not a terminal: no prompt
    assert "--yes" in one_clean_error_line(refused)
    assert len(await tables(url)) == 11

    dropped = await run("drop", "--yes", url=url, cwd=tmp_path)
    assert (dropped.code, dropped.err) == (0, ""), dropped
    assert await tables(url) == set()


async def test_the_alembic_command_line_runs_its_own_loop(
    empty_database: EmptyDatabase, tmp_path: Path
) -> None:
    url = await empty_database()
    config = ("-c", str(ALEMBIC_INI))
    upgraded = await run(*config, "upgrade", "head", url=url, cwd=tmp_path, module="alembic")
    assert upgraded.code == 0, upgraded
    assert (await run("check", url=url, cwd=tmp_path)).code == 0
    downgraded = await run(*config, "downgrade", "base", url=url, cwd=tmp_path, module="alembic")
    assert downgraded.code == 0, downgraded
    assert await tables(url) == {"alembic_version"}


async def test_the_alembic_command_line_fails_in_one_line(
    database_url: URL, tmp_path: Path
) -> None:
    name = f"no_such_db_{uuid.uuid4().hex[:8]}"
    config = ("-c", str(ALEMBIC_INI))
    result = await run(
        *config,
        "upgrade",
        "head",
        url=database_url.set(database=name),
        cwd=tmp_path,
        module="alembic",
    )
    assert result.code != 0 and "Traceback" not in result.printed
    assert f'FAILED: the database "{name}" does not exist at 127.0.0.1:' in result.out
    assert database_url.password is not None and database_url.password not in result.printed


@asynccontextmanager
async def counting_listener() -> AsyncIterator[tuple[int, list[str]]]:
    """A local port that notes every connection made to it (and closes it at once)."""
    seen: list[str] = []

    async def note(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(note, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


def check_offline_sql(sql: str, *, lock_timeout_ms: int) -> None:
    """The whole schema in one transaction, bounded by the migration timeouts."""
    statements = [s.strip() for s in sql.split(";\n") if s.strip()]
    assert statements[:4] == [
        "BEGIN",
        "SELECT pg_advisory_xact_lock(7316224001)",
        f"SET LOCAL lock_timeout = '{lock_timeout_ms}ms'",
        "SET LOCAL statement_timeout = '15000ms'",
    ]
    assert sql.rstrip().endswith("COMMIT;")
    created = re.findall(r"^CREATE TABLE (\w+) \(", sql, re.MULTILINE)
    assert sorted(created) == sorted([*ALL_TABLES, "alembic_version"])
    assert "CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql" in sql
    assert len(re.findall(r"^CREATE TRIGGER trg_\w+_updated_at ", sql, re.MULTILINE)) == len(
        UPDATED_AT_TABLES
    )
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{head_revision()}')" in sql


async def test_the_offline_sql_is_printed_without_connecting_anywhere(tmp_path: Path) -> None:
    """`alembic upgrade head --sql` and `init --sql`: the SQL for review, from the settings'
    timeouts; nothing connects, not to DATABASE_URL, not to the embedded default."""
    env = {"DB_MIGRATION_LOCK_TIMEOUT_MS": "1500"}
    async with counting_listener() as (port, connections):
        url = f"postgresql://app:{CANARY}@127.0.0.1:{port}/app"
        args = ("-c", str(ALEMBIC_INI), "upgrade", "head", "--sql")
        offline, init = await asyncio.gather(
            run(*args, url=url, cwd=tmp_path, module="alembic", **env),
            run("init", "--sql", url=None, cwd=tmp_path, ENVIRONMENT="production", **env),
        )
    assert connections == []
    for result in (offline, init):
        assert result.code == 0 and "Traceback" not in result.printed, result
        check_offline_sql(result.out, lock_timeout_ms=1500)
        assert CANARY not in result.printed
    assert offline.out == init.out
