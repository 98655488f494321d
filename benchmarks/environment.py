"""Where the benchmark runs: the server, fresh seeded databases, the seed's memory, the machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import resource
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy
from sqlalchemy.engine import URL

from benchmarks.scenarios_asyncpg import connect_kwargs
from exportsathi_db import DatabaseConnection, init_db
from exportsathi_db.config import parse_database_url
from exportsathi_db.seed import seed

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def server() -> Iterator[URL]:
    """The server to benchmark on: DATABASE_URL's (its role must be allowed to CREATE DATABASE),
    else a throwaway local server removed at the end."""
    if os.environ.get("DATABASE_URL"):
        url, _ = parse_database_url(os.environ["DATABASE_URL"])
        yield url
        return
    from exportsathi_db.servers import TemporaryCluster

    with TemporaryCluster() as temporary:
        yield temporary.url("postgres")


async def _admin(url: URL) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(**connect_kwargs(url))
    return conn


async def fresh_database(admin_url: URL, prefix: str) -> URL:
    """A new empty database on the server of `admin_url`."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await _admin(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.set(database=name)


async def drop_database(admin_url: URL, url: URL) -> None:
    conn = await _admin(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed_database(url: URL, rows: int) -> float:
    """Migrate and seed about `rows` rows (reports + chat messages); returns the seconds taken.

    Then VACUUM and CHECKPOINT, so that neither autovacuum on the fresh tables, nor hint-bit
    writes on first reads, nor a checkpoint lands in the middle of the first timed scenario.
    """
    db = DatabaseConnection(url)
    try:
        await init_db(db)
        began = time.perf_counter()
        async with db.engine.begin() as conn:
            await seed(conn, rows=rows, progress=True)
        seconds = time.perf_counter() - began
    finally:
        await db.dispose()
    admin = await _admin(url)
    try:
        await admin.execute("VACUUM (ANALYZE)")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await admin.execute("CHECKPOINT")
    finally:
        await admin.close()
    return seconds


async def seed_peak_rss(admin_url: URL, rows: int) -> dict[str, Any]:
    """Peak RSS (MB) and wall time of `python -m exportsathi_db seed --rows N --quiet` into a
    fresh database, as a separate process (GNU time -v, else getrusage of the children)."""
    url = await fresh_database(admin_url, "exportsathi_bench_rss")
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    command = [sys.executable, "-m", "exportsathi_db", "seed", "--rows", str(rows), "--quiet"]
    if gnu_time := shutil.which("time"):  # GNU time, not the shell keyword
        command = [gnu_time, "-v", *command]
    try:
        began = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        seconds = time.perf_counter() - began
        if process.returncode != 0:
            raise RuntimeError(f"seed failed: {(out + err).decode(errors='replace')[-2000:]}")
        match = re.search(rb"Maximum resident set size \(kbytes\): (\d+)", err)
        kib = int(match.group(1)) if match else resource.getrusage(resource.RUSAGE_CHILDREN)[2]
        how = "GNU time -v" if match else "getrusage(RUSAGE_CHILDREN)"
        return {"rows": rows, "peak_rss_mb": kib / 1024, "seconds": seconds, "measured_by": how}
    finally:
        await drop_database(admin_url, url)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    return 0.0


async def describe(url: URL) -> dict[str, Any]:
    """The machine and the versions the numbers were measured with."""
    conn = await _admin(url)
    try:
        postgres = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(_ram_gib(), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "sqlalchemy": sqlalchemy.__version__,
        "asyncpg": asyncpg.__version__,
        "server": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "throwaway local server",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_at_start": os.getloadavg()[0],  # other work on the machine skews the numbers
        "package": _package_version(),
    }


def _package_version() -> str:
    """The commit measured, and whether exportsathi_db/ had changes not committed yet."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git work tree)"
    dirty = git("status", "--porcelain", "--", "exportsathi_db")
    return commit + (" + uncommitted changes in exportsathi_db/" if dirty else "")
