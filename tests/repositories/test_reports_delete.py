"""ReportRepository.delete: cascades to all a report holds and takes it off the counters."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import NotFoundError
from exportsathi_db.models import ChatSession, FinanceAnalysis, LogisticsAnalysis, Report
from exportsathi_db.repositories.reports import ReportRepository
from exportsathi_db.views import ReportView
from tests.factories import make_report, make_user
from tests.repositories.reports_helpers import (
    TABLES,
    add_children,
    count_rows,
    metrics,
    new_report,
    true_counts,
)
from tests.statements import count_statements


async def _hang_everything_on(session: AsyncSession, report: ReportView) -> None:
    repo = ReportRepository(session)
    await add_children(repo, report, 3)
    first = (await repo.list_certifications(report.id, user_id=report.user_id))[0]
    await repo.update_certification(first.id, user_id=report.user_id, status="completed")
    owner = {"user_id": report.user_id, "report_id": report.id}
    session.add_all(
        [
            ChatSession(**owner),
            FinanceAnalysis(**owner, working_capital_data={"needed": 1}),
            LogisticsAnalysis(**owner),
        ]
    )
    await session.flush()


async def test_delete_cascades_to_everything_and_uncounts_it(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    repo = ReportRepository(db_session)
    kept, doomed = await new_report(repo, user), await new_report(repo, user)
    await _hang_everything_on(db_session, kept)
    await _hang_everything_on(db_session, doomed)
    assert await metrics(db_session, user.id) == (2, 2, 6)
    async with count_statements(db_session) as seen:
        await repo.delete(doomed.id, user_id=user.id)
    assert len(seen) == 2
    held = {"certification_progress": 3, "generated_documents": 3, "action_plan_progress": 6}
    for table in TABLES:
        key = "id" if table == "reports" else "report_id"
        assert await count_rows(db_session, table, **{key: doomed.id}) == 0
        assert await count_rows(db_session, table, **{key: kept.id}) == held.get(table, 1)
    assert await metrics(db_session, user.id) == await true_counts(db_session, user.id) == (1, 1, 3)
    assert await repo.get_or_none(doomed.id, user_id=user.id) is None
    assert await db_session.get(Report, doomed.id) is None


async def test_delete_of_an_uncounted_report_creates_no_metrics(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)  # made outside the repository: never counted
    await ReportRepository(db_session).delete(report.id, user_id=user.id)
    assert await count_rows(db_session, "reports", id=report.id) == 0
    assert await metrics(db_session, user.id) is None


async def test_delete_of_another_users_or_a_missing_report_deletes_nothing(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    repo = ReportRepository(db_session)
    report = await new_report(repo, owner)
    await add_children(repo, report, 2)
    async with count_statements(db_session) as seen:
        with pytest.raises(NotFoundError):
            await repo.delete(report.id, user_id=other.id)
    assert len(seen) == 1
    with pytest.raises(NotFoundError):
        await repo.delete(uuid.uuid4(), user_id=owner.id)
    assert await count_rows(db_session, "reports", id=report.id) == 1
    assert await count_rows(db_session, "generated_documents", report_id=report.id) == 2
    assert await metrics(db_session, owner.id) == (1, 0, 2)
    assert (await db_session.execute(text("SELECT 1"))).scalar_one() == 1  # still usable
