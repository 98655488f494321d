"""The scenarios through exportsathi_db's public API: one unit of work each, as an app does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from benchmarks.fixtures import REPORT_DATA
from exportsathi_db import (
    AnalysisRepository,
    ChatRepository,
    DatabaseConnection,
    ReportRepository,
    Settings,
    UserRepository,
)

QUESTION = "Do I need a phytosanitary certificate for turmeric to the US?"
ANSWER = "No for processed powder; yes for whole rhizomes. Check the USDA APHIS import rules."


def connection(
    url: str | URL, *, pool_size: int = 10, max_overflow: int = 10
) -> DatabaseConnection:
    """The package's DatabaseConnection, its pool 10..20 connections like the others'."""
    settings = Settings(db_pool_size=pool_size, db_max_overflow=max_overflow)
    return DatabaseConnection(url, settings=settings)


class RepoScenarios:
    """`read_scope=True` runs the read-only scenarios in `db.read_scope()` (BEGIN READ ONLY,
    closed by a rollback) instead of `db.session_scope()` (BEGIN ... COMMIT)."""

    def __init__(self, db: DatabaseConnection, *, read_scope: bool = False) -> None:
        self.db = db
        self.read_scope = read_scope
        self.name = "repo (read_scope)" if read_scope else "repo"

    def _reading(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self.db.read_scope() if self.read_scope else self.db.session_scope()

    async def login(self, email: str) -> Any:
        """The repositories' best login: `login(email)`, one UPDATE … RETURNING."""
        async with self.db.session_scope() as s:
            user = await UserRepository(s).login(email)
        assert user is not None
        return user.id

    async def login_two_statements(self, email: str) -> Any:
        """The old way: `get_by_email`, then `record_login` (2 statements)."""
        async with self.db.session_scope() as s:
            users = UserRepository(s)
            user = await users.get_by_email(email)
            assert user is not None
            user = await users.record_login(user.id)
        return user.id

    async def dashboard(self, user_id: uuid.UUID) -> Any:
        async with self._reading() as s:
            user = await UserRepository(s).get(user_id)
            metrics = await AnalysisRepository(s).get_metrics(user_id)
            page = await ReportRepository(s).list_for_user(user_id, limit=20)
        return user.id, metrics.reports_generated, len(page.items)

    async def new_report(self, user_id: uuid.UUID) -> Any:
        async with self.db.session_scope() as s:
            report = await ReportRepository(s).create(
                user_id=user_id,
                product_name="Organic turmeric powder",
                destination_country="United States",
                hs_code="0910.30",
                risk_score=35,
                report_data=REPORT_DATA,
            )
        return report.user_id, report.status

    async def report_page(self, report_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        async with self._reading() as s:
            report = await ReportRepository(s).get_full(report_id, user_id=user_id)
        return len(report.certifications), len(report.documents), len(report.action_plan)

    async def chat_turn(self, session_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        async with self.db.session_scope() as s:
            chat = ChatRepository(s)
            await chat.add_message(session_id, user_id=user_id, role="user", content=QUESTION)
            await chat.add_message(
                session_id, user_id=user_id, role="assistant", content=ANSWER, sources=[]
            )
            history = await chat.history(session_id, user_id=user_id, limit=50)
        return len(history), history[-1].content

    async def save_action_plan(
        self, report_id: uuid.UUID, user_id: uuid.UUID, tasks: list[dict[str, Any]]
    ) -> Any:
        async with self.db.session_scope() as s:
            saved = await ReportRepository(s).save_action_plan(
                report_id, user_id=user_id, tasks=tasks
            )
        return len(saved)

    async def add_messages(
        self, session_id: uuid.UUID, user_id: uuid.UUID, messages: list[dict[str, Any]]
    ) -> Any:
        async with self.db.session_scope() as s:
            added = await ChatRepository(s).add_messages(
                session_id, user_id=user_id, messages=messages
            )
        return len(added)

    async def close(self) -> None:
        """The connection belongs to whoever made it (the read_scope variant shares it)."""


@asynccontextmanager
async def opened(url: str | URL) -> AsyncIterator[tuple[RepoScenarios, RepoScenarios]]:
    """Both repo variants over one DatabaseConnection, disposed at the end."""
    db = connection(url)
    try:
        yield RepoScenarios(db), RepoScenarios(db, read_scope=True)
    finally:
        await db.dispose()
