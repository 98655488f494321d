"""The scenarios in plain SQLAlchemy ORM, as its users write them without this package:
`session.add()` + `commit()`, `session.get`, `select()` with `selectinload`, configured as
the SQLAlchemy asyncio docs advise: `async_sessionmaker(expire_on_commit=False)` (objects stay
usable after the commit, no `refresh`), no `pool_pre_ping`, the pool 10..20 connections."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload

from benchmarks.fixtures import REPORT_DATA
from benchmarks.scenarios_repo import ANSWER, QUESTION
from exportsathi_db import (
    ActionPlanProgress,
    ChatMessage,
    ChatSession,
    Report,
    User,
    UserMetrics,
)


def create_engine(url: URL, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    """The same pool as the others': 10 connections + 10 overflow; no pre-ping."""
    return create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow)


def _live(chat: ChatSession | None, user_id: uuid.UUID, now: datetime) -> ChatSession:
    if chat is None or chat.user_id != user_id or (chat.expires_at and chat.expires_at <= now):
        raise LookupError("chat session not found")
    return chat


class OrmScenarios:
    name = "orm"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def login(self, email: str) -> Any:
        async with self.sessions() as s:
            query = select(User).where(func.lower(User.email) == email.lower())
            user = (await s.scalars(query)).one()
            user.last_login = datetime.now(UTC)
            await s.commit()
            return user.id

    async def dashboard(self, user_id: uuid.UUID) -> Any:
        async with self.sessions.begin() as s:
            user = await s.get(User, user_id)
            assert user is not None
            query = select(UserMetrics).where(UserMetrics.user_id == user_id)
            metrics = (await s.scalars(query)).one_or_none()
            latest = (
                select(Report)
                .where(Report.user_id == user_id)
                .order_by(Report.created_at.desc(), Report.id.desc())
                .limit(20)
            )
            reports = (await s.scalars(latest)).all()
            return user.id, metrics.reports_generated if metrics else 0, len(reports)

    async def new_report(self, user_id: uuid.UUID) -> Any:
        async with self.sessions() as s:
            user = await s.get(User, user_id)
            assert user is not None
            report = Report(
                user_id=user.id,
                product_name="Organic turmeric powder",
                destination_country="United States",
                business_type=user.business_type,
                company_size=user.company_size,
                monthly_volume=user.monthly_volume,
                hs_code="0910.30",
                risk_score=35,
                report_data=REPORT_DATA,
            )
            s.add(report)
            query = select(UserMetrics).where(UserMetrics.user_id == user_id)
            metrics = (await s.scalars(query)).one_or_none()
            if metrics is None:
                metrics = UserMetrics(user_id=user_id, reports_generated=0)
                s.add(metrics)
            metrics.reports_generated += 1
            await s.commit()
            return report.user_id, report.status

    async def report_page(self, report_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        async with self.sessions.begin() as s:
            query = (
                select(Report)
                .where(Report.id == report_id, Report.user_id == user_id)
                .options(
                    selectinload(Report.certifications),
                    selectinload(Report.documents),
                    selectinload(Report.action_plan),
                )
            )
            report = (await s.scalars(query)).one()
            return len(report.certifications), len(report.documents), len(report.action_plan)

    async def chat_turn(self, session_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        async with self.sessions.begin() as s:
            now = datetime.now(UTC)
            chat = _live(await s.get(ChatSession, session_id), user_id, now)
            s.add(ChatMessage(session_id=session_id, role="user", content=QUESTION))
            s.add(ChatMessage(session_id=session_id, role="assistant", content=ANSWER, sources=[]))
            if chat.expires_at is not None:
                chat.expires_at = now + (chat.expires_at - chat.last_activity)
            chat.last_activity = now
            query = (
                select(ChatMessage)
                .where(ChatMessage.session_id == session_id)
                .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
                .limit(50)
            )
            history = list(reversed((await s.scalars(query)).all()))
            return len(history), history[-1].content

    async def save_action_plan(
        self, report_id: uuid.UUID, user_id: uuid.UUID, tasks: list[dict[str, Any]]
    ) -> Any:
        async with self.sessions.begin() as s:
            report = await s.get(Report, report_id)
            if report is None or report.user_id != user_id:
                raise LookupError("report not found")
            s.add_all(
                ActionPlanProgress(user_id=user_id, report_id=report_id, **task) for task in tasks
            )
        return len(tasks)

    async def add_messages(
        self, session_id: uuid.UUID, user_id: uuid.UUID, messages: list[dict[str, Any]]
    ) -> Any:
        async with self.sessions.begin() as s:
            now = datetime.now(UTC)
            chat = _live(await s.get(ChatSession, session_id), user_id, now)
            s.add_all(ChatMessage(session_id=session_id, **message) for message in messages)
            if chat.expires_at is not None:
                chat.expires_at = now + (chat.expires_at - chat.last_activity)
            chat.last_activity = now
        return len(messages)

    async def close(self) -> None:
        await self.engine.dispose()
