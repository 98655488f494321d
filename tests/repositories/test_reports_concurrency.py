"""The counters stay equal to the rows when many units of work run at once (committed data)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import NotFoundError
from exportsathi_db.repositories import UserRepository
from exportsathi_db.repositories.reports import ReportRepository
from exportsathi_db.views import UserView
from tests.factories import PASSWORD_HASH, unique
from tests.repositories.reports_helpers import metrics, true_counts

STATUSES = ("not_started", "in_progress", "completed", "rejected")


@pytest_asyncio.fixture(loop_scope="session")
async def committed_user(db: DatabaseConnection) -> AsyncIterator[UserView]:
    """A user committed for real, deleted (with everything of theirs) after the test."""
    async with db.session_scope() as session:
        user = await UserRepository(session).create(
            email=f"{unique('race')}@example.in",
            password_hash=PASSWORD_HASH,
            business_type="Manufacturing",
            company_size="Micro",
        )
    try:
        yield user
    finally:
        async with db.session_scope() as session:
            await UserRepository(session).delete(user.id)


async def _counters_match(db: DatabaseConnection, user_id: uuid.UUID) -> tuple[int, int, int]:
    async with db.session_scope() as session:
        counted = await metrics(session, user_id)
        truth = await true_counts(session, user_id)
    assert counted == truth
    return truth


async def test_concurrent_reports_documents_and_status_changes_keep_counters_true(
    db: DatabaseConnection, committed_user: UserView
) -> None:
    user_id = committed_user.id

    async def new_report(number: int) -> uuid.UUID:
        async with db.session_scope() as session:
            repo = ReportRepository(session)
            report = await repo.create(
                user_id=user_id,
                product_name=f"Product {number}",
                destination_country="Canada",
                report_data={"n": number},
            )
            for kind in ("invoice", "packing_list"):
                await repo.add_document(
                    report.id, user_id=user_id, document_type=kind, document_data={}
                )
            for name in ("FDA", "CE"):
                await repo.add_certification(
                    report.id,
                    user_id=user_id,
                    certification_id=name,
                    certification_name=name,
                    certification_type="mandatory",
                )
            return report.id

    report_ids = await asyncio.gather(*(new_report(n) for n in range(8)))
    assert await _counters_match(db, user_id) == (8, 0, 16)

    async with db.session_scope() as session:
        repo = ReportRepository(session)
        certifications = [
            c.id for r in report_ids for c in await repo.list_certifications(r, user_id=user_id)
        ]
    rng = random.Random(7)

    async def change_status(certification_id: uuid.UUID, status: str) -> None:
        async with db.session_scope() as session:
            await ReportRepository(session).update_certification(
                certification_id, user_id=user_id, status=status
            )

    # Every certification is moved by several units of work at once, many to `completed`:
    # without the row lock two of them would both count the same completion.
    for _ in range(3):
        changes = [
            change_status(c, rng.choice(("completed", "completed", *STATUSES)))
            for c in certifications
            for _ in range(3)
        ]
        rng.shuffle(changes)
        await asyncio.gather(*changes)
        await _counters_match(db, user_id)

    async def delete_report(report_id: uuid.UUID) -> None:
        async with db.session_scope() as session:
            await ReportRepository(session).delete(report_id, user_id=user_id)

    async def complete_or_vanish(certification_id: uuid.UUID) -> None:
        with contextlib.suppress(NotFoundError):  # its report may be deleted first
            await change_status(certification_id, "completed")

    async def document_or_vanish(report_id: uuid.UUID) -> None:
        with contextlib.suppress(NotFoundError):  # the report may be deleted first
            async with db.session_scope() as session:
                await ReportRepository(session).add_document(
                    report_id, user_id=user_id, document_type="coo", document_data={}
                )

    async def certification_or_vanish(report_id: uuid.UUID) -> None:
        with contextlib.suppress(NotFoundError):  # the report may be deleted first
            async with db.session_scope() as session:
                await ReportRepository(session).add_certification(
                    report_id,
                    user_id=user_id,
                    certification_id="BIS",
                    certification_name="BIS",
                    certification_type="quality",
                    status="completed",
                )

    # A child and its count are one statement, which locks the report before the counter
    # row, in the order the delete takes them: no deadlock, and nothing left counted.
    doomed = report_ids[:3]
    racing = [delete_report(r) for r in doomed] + [complete_or_vanish(c) for c in certifications]
    racing += [document_or_vanish(r) for r in doomed]
    racing += [certification_or_vanish(r) for r in doomed]
    rng.shuffle(racing)
    await asyncio.gather(*racing)
    reports, completed, documents = await _counters_match(db, user_id)
    assert (reports, documents) == (5, 10) and completed == 10
