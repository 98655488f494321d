"""What the command line prints: each echoed statement once, a progress bar that ends at 100%."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.engine import URL


def _cli(url: URL, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"DATABASE_URL": url.render_as_string(hide_password=False)} | env
    return subprocess.run(
        [sys.executable, "-m", "exportsathi_db", *args],
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_echo_prints_each_statement_once(database_url: URL) -> None:
    done = _cli(database_url, "check", DB_ECHO="true")
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    assert printed.count("SHOW server_version") == 1, printed


async def test_seed_progress_ends_at_100_percent(
    empty_database: Callable[[], Awaitable[URL]],
) -> None:
    done = _cli(await empty_database(), "seed", "--rows", "300")
    assert done.returncode == 0, done.stderr
    last = done.stderr.strip().splitlines()[-1].split("\r")[-1]
    assert "100%" in last, last
