"""Fixtures of the reliability suite: a throwaway, migrated PostgreSQL server per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from sqlalchemy.engine import URL

from exportsathi_db.migrations import init_db
from exportsathi_db.servers import TemporaryCluster
from exportsathi_db.testing import create_database
from tests.reliability.support import connect


@pytest.fixture(scope="module")
def own_server() -> Iterator[TemporaryCluster]:
    """A server of this module's own: faults injected here cannot disturb other tests."""
    with TemporaryCluster() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def own_url(own_server: TemporaryCluster) -> AsyncIterator[URL]:
    """A migrated database on `own_server` (migrations straight to the server)."""
    url = await create_database(own_server.url())
    db = connect(url)
    try:
        await init_db(db)
    finally:
        await db.dispose()
    yield url
