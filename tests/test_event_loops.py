"""One process, several event loops: scripts, CLIs and notebooks call `asyncio.run` more
than once. The default `db_connection` rebuilds its engine for a new loop (the old loop's
connections are closed, not leaked); two loops using it at once is a clear error."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.engine import URL

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import ConfigurationError
from tests.reliability.support import app_backends

SCRIPT = """
import asyncio, gc
from exportsathi_db import check_db_connection, drop_db, init_db
from exportsathi_db.migrations import current_revision
print(asyncio.run(check_db_connection()))
print(asyncio.run(check_db_connection()))
asyncio.run(drop_db())
asyncio.run(init_db())
print(asyncio.run(current_revision()) is not None)
print(asyncio.run(check_db_connection()))
input()  # hold the process (and any leaked socket) open while the test looks
"""


async def test_asyncio_run_twice_just_works_and_leaks_no_connection(
    empty_database: Callable[[], Awaitable[URL]],
) -> None:
    url = await empty_database()
    app = "loops-script"
    env = os.environ | {
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "DB_APPLICATION_NAME": app,
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child read line by line below
        [sys.executable, "-c", SCRIPT],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        lines = [await asyncio.to_thread(proc.stdout.readline) for _ in range(4)]
        assert [line.strip() for line in lines] == ["True", "True", "True", "True"], (
            lines,
            proc.stderr.read() if proc.poll() is not None and proc.stderr else "",
        )
        # Six loops came and went; only the last one's pooled connection may remain.
        backends = await app_backends(url, app)
        assert len(backends) <= 1, backends
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)


def test_two_running_loops_at_once_is_a_clear_error(database_url: URL) -> None:
    db = DatabaseConnection(database_url)
    started, release = threading.Event(), threading.Event()

    async def hold() -> None:
        assert db.engine is not None  # binds `db` to this thread's loop
        started.set()
        await asyncio.to_thread(release.wait)
        await db.dispose()

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    try:
        assert started.wait(10)

        async def use() -> None:
            _ = db.engine

        with pytest.raises(ConfigurationError, match="another running event loop"):
            asyncio.run(use())
    finally:
        release.set()
        thread.join(10)
