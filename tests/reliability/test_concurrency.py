"""Concurrent units of work on the shared test database: no lost updates, no duplicate emails."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from sqlalchemy import text

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import AlreadyExistsError
from exportsathi_db.repositories import metrics
from exportsathi_db.repositories.users import UserRepository
from tests.factories import PASSWORD_HASH, unique

PROFILE: dict[str, Any] = {
    "password_hash": PASSWORD_HASH,
    "business_type": "SaaS",
    "company_size": "Small",
}


@pytest_asyncio.fixture(loop_scope="session")
async def cleanup(db: DatabaseConnection) -> AsyncIterator[list[str]]:
    """Emails (any case) to delete, with everything of theirs, after the test."""
    emails: list[str] = []
    yield emails
    async with db.session_scope() as session:
        await session.execute(
            text("DELETE FROM users WHERE lower(email) = ANY(:emails)"),
            {"emails": [e.lower() for e in emails]},
        )


async def test_concurrent_metric_increments_are_not_lost(
    db: DatabaseConnection, cleanup: list[str]
) -> None:
    email = f"{unique('metrics')}@example.in"
    cleanup.append(email)
    async with db.session_scope() as session:
        user_id = (await UserRepository(session).create(email=email, **PROFILE)).id

    async def bump() -> None:
        async with db.session_scope() as session:
            await metrics.add(session, user_id, reports_generated=1)

    await asyncio.gather(*(bump() for _ in range(200)))

    async with db.session_scope() as session:
        rows = await session.execute(
            text("SELECT reports_generated FROM user_metrics WHERE user_id = :u"), {"u": user_id}
        )
        assert rows.scalars().all() == [200]


async def test_concurrent_signups_with_one_email_make_one_user(
    db: DatabaseConnection, cleanup: list[str]
) -> None:
    local = unique("signup")
    variants = [_letter_case(f"{local}@example.in", i) for i in range(50)]
    assert len(set(variants)) == 50
    cleanup.append(variants[0])

    async def signup(email: str) -> uuid.UUID | BaseException:
        try:
            async with db.session_scope() as session:
                return (await UserRepository(session).create(email=email, **PROFILE)).id
        except AlreadyExistsError as exc:
            return exc

    results = await asyncio.gather(*(signup(email) for email in variants))

    created = [r for r in results if isinstance(r, uuid.UUID)]
    refused = [r for r in results if isinstance(r, AlreadyExistsError)]
    assert len(created) == 1 and len(refused) == 49
    assert all(e.constraint == "uq_users_lower_email" for e in refused)
    async with db.session_scope() as session:
        rows = await session.execute(
            text("SELECT id FROM users WHERE lower(email) = :e"), {"e": variants[0].lower()}
        )
        assert rows.scalars().all() == created


def _letter_case(email: str, n: int) -> str:
    """The n-th upper/lower-case spelling of email (bit i of n upper-cases the i-th letter)."""
    letters = [i for i, c in enumerate(email) if c.isalpha()]
    chars = list(email)
    for bit, pos in enumerate(letters):
        if n >> bit & 1:
            chars[pos] = chars[pos].upper()
    return "".join(chars)


async def _owner_with_report(db: DatabaseConnection, cleanup: list[str]) -> tuple[Any, Any]:
    from exportsathi_db.repositories import ReportRepository

    email = f"{unique('race')}@example.in"
    cleanup.append(email)
    async with db.session_scope() as session:
        user = await UserRepository(session).create(email=email, **PROFILE)
        report = await ReportRepository(session).create(
            user_id=user.id,
            product_name="Brass handicrafts",
            destination_country="Germany",
            report_data={"v": 0},
        )
    return user.id, report.id


async def test_concurrent_status_updates_of_one_report_lose_nothing(
    db: DatabaseConnection, cleanup: list[str]
) -> None:
    """Each update is one `UPDATE ... RETURNING` (no read-modify-write in the app), so the
    row lock serialises them: the last committed write wins, every one commits."""
    from exportsathi_db.repositories import ReportRepository

    user_id, report_id = await _owner_with_report(db, cleanup)
    statuses = ["processing", "failed", "completed"] * 20

    async def update(i: int, status: str) -> None:
        async with db.session_scope() as session:
            await ReportRepository(session).update(
                report_id, user_id=user_id, status=status, risk_score=i % 101
            )

    await asyncio.gather(*(update(i, s) for i, s in enumerate(statuses)))
    async with db.session_scope() as session:
        status, risk = (
            await session.execute(
                text("SELECT status, risk_score FROM reports WHERE id = :r"), {"r": report_id}
            )
        ).one()
    assert (status, risk) in {(s, i % 101) for i, s in enumerate(statuses)}  # one whole write


async def test_concurrent_completions_of_one_certification_count_once(
    db: DatabaseConnection, cleanup: list[str]
) -> None:
    """The certification row is locked (SELECT ... FOR UPDATE) while its old status is read:
    50 racing completions count exactly one completed certification."""
    from exportsathi_db.repositories import AnalysisRepository, ReportRepository

    user_id, report_id = await _owner_with_report(db, cleanup)
    async with db.session_scope() as session:
        cert = await ReportRepository(session).add_certification(
            report_id,
            user_id=user_id,
            certification_id="BIS",
            certification_name="BIS certification",
            certification_type="quality",
        )

    async def complete() -> None:
        async with db.session_scope() as session:
            await ReportRepository(session).update_certification(
                cert.id, user_id=user_id, status="completed"
            )

    await asyncio.gather(*(complete() for _ in range(50)))
    async with db.session_scope() as session:
        metrics = await AnalysisRepository(session).get_metrics(user_id)
        assert metrics.certifications_completed == 1


async def test_concurrent_save_finance_keeps_one_row_and_never_errors(
    db: DatabaseConnection, cleanup: list[str]
) -> None:
    from exportsathi_db.repositories import AnalysisRepository

    user_id, report_id = await _owner_with_report(db, cleanup)

    async def save(i: int) -> None:
        async with db.session_scope() as session:
            await AnalysisRepository(session).save_finance(
                report_id, user_id=user_id, working_capital_data={"writer": i}
            )

    await asyncio.gather(*(save(i) for i in range(40)))
    async with db.session_scope() as session:
        rows = (
            (
                await session.execute(
                    text("SELECT working_capital_data FROM finance_analysis WHERE report_id = :r"),
                    {"r": report_id},
                )
            )
            .scalars()
            .all()
        )
    assert len(rows) == 1 and rows[0]["writer"] in range(40)
