"""Every Python block of README.md runs as written, against a real database.

- A block with `asyncio.run(` is a script: it runs in a subprocess with DATABASE_URL set.
- A block with `def test_` is a test module: it runs under pytest in a subprocess.
- Any other block is a fragment of a unit of work: the fragments run in order, in one
  namespace, with top-level `await`, inside the test's rolled-back `session` (plus the
  script's `PASSWORD_HASH`), as a FastAPI route would run them; `db_connection` is the test
  database's.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

import exportsathi_db
from exportsathi_db.database import DatabaseConnection
from tests.factories import PASSWORD_HASH

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.M | re.S)
SCRIPTS = [b for b in BLOCKS if "asyncio.run(" in b]
TEST_MODULES = [b for b in BLOCKS if "def test_" in b]
FRAGMENTS = [b for b in BLOCKS if b not in SCRIPTS and b not in TEST_MODULES]


def _env(url: URL) -> dict[str, str]:
    return os.environ | {"DATABASE_URL": url.render_as_string(hide_password=False)}


def test_the_readme_has_python_blocks_of_each_kind() -> None:
    assert SCRIPTS and TEST_MODULES and len(FRAGMENTS) >= 4


@pytest.mark.parametrize("script", SCRIPTS)
async def test_script_blocks_run(
    script: str, empty_database: Callable[[], Awaitable[URL]]
) -> None:
    url = await empty_database()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script],
        env=_env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


async def test_fragment_blocks_run_in_order_in_one_unit_of_work(
    db_session: AsyncSession, db: DatabaseConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `from exportsathi_db import db_connection` in a block gets the test database's.
    monkeypatch.setattr(exportsathi_db, "db_connection", db)
    namespace: dict[str, Any] = {"session": db_session, "PASSWORD_HASH": PASSWORD_HASH}
    try:
        for n, block in enumerate(FRAGMENTS):
            flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            code = compile(block, f"README block {n}", "exec", flags=flags)
            result = eval(code, namespace)  # noqa: S307 - the README's own code, run on purpose
            if result is not None:  # a block with top-level await compiles to a coroutine
                await result
    finally:  # what the blocks committed through db_connection.run()
        async with db.session_scope() as session:
            await session.execute(text("DELETE FROM users WHERE email = 'ravi@kochi-spices.in'"))


@pytest.mark.parametrize("module", TEST_MODULES)
def test_test_module_blocks_pass_under_pytest(
    module: str, tmp_path: Path, database_url: URL
) -> None:
    (tmp_path / "test_from_readme.py").write_text(module)
    options = [
        "asyncio_mode=auto",
        "asyncio_default_fixture_loop_scope=session",
        "asyncio_default_test_loop_scope=session",
    ]
    root = README.parent
    env = _env(database_url) | {
        "TEST_DATABASE_URL": database_url.set(database="postgres").render_as_string(
            hide_password=False
        ),
        "PYTHONPATH": str(root),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["-p", "exportsathi_db.testing", "--rootdir", str(tmp_path)]
        + [arg for option in options for arg in ("-o", option)]
        + [str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
