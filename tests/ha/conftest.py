"""Fixtures of the high-availability suite: a Patroni cluster (etcd + 3 PostgreSQL 15 nodes)
per module, an application role and database on it, and the multi-host URLs the application
connects with. Without Patroni or etcd the tests skip, except in CI (CI set), where they fail.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import URL

from tests.ha.cluster import PatroniCluster, missing_components
from tests.servers import missing

# The figures each scenario measured, printed again at the end of the run.
REPORTS: list[str] = []


@dataclass(frozen=True)
class HaApp:
    """The application's view of the cluster: its role, database and URLs."""

    cluster: PatroniCluster
    user: str
    password: str
    database: str

    def url(self, target_session_attrs: str = "read-write") -> URL:
        """Every node, one `host=` each; asyncpg picks the one matching the attribute."""
        return self.cluster.url(
            self.database, self.user, self.password, target_session_attrs=target_session_attrs
        )

    def url_string(self, target_session_attrs: str = "read-write") -> str:
        """The same as a string, as DATABASE_URL would hold it."""
        hosts = "&".join(f"host=127.0.0.1:{n.port}" for n in self.cluster.nodes)
        return (
            f"postgresql+asyncpg://{self.user}:{self.password}@/{self.database}"
            f"?{hosts}&target_session_attrs={target_session_attrs}"
        )


@pytest.fixture(scope="module")
def ha_cluster() -> Iterator[PatroniCluster]:
    """A healthy three-node Patroni cluster of this module's own, killed at the end."""
    if absent := missing_components():
        missing(f"high-availability tests need {', '.join(absent)} (.ci/ha.sh installs them)")
    with PatroniCluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def ha_app(ha_cluster: PatroniCluster) -> HaApp:
    """An application role owning a database with the test's table, on the leader."""
    app = HaApp(ha_cluster, "app", secrets.token_urlsafe(16), "app")
    ha_cluster.psql(f"CREATE ROLE {app.user} LOGIN PASSWORD '{app.password}'")
    ha_cluster.psql(f"CREATE DATABASE {app.database} OWNER {app.user}")
    ha_cluster.psql(
        f"SET ROLE {app.user}; CREATE TABLE ha_writes (id uuid PRIMARY KEY, "
        "task int NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        database=app.database,
    )
    ha_cluster.wait_replayed()  # the role and database exist on the standbys too
    return app


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("high availability: measured")
        for line in REPORTS:
            terminalreporter.write_line(line)
