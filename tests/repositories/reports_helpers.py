"""Helpers of the ReportRepository tests: re-read counters and rows straight from the tables."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.models import Report, User
from exportsathi_db.repositories.reports import ReportRepository
from exportsathi_db.views import ReportView

TABLES = (
    "reports",
    "certification_progress",
    "generated_documents",
    "action_plan_progress",
    "chat_sessions",
    "finance_analysis",
    "logistics_analysis",
)


async def metrics(session: AsyncSession, user_id: uuid.UUID) -> tuple[int, int, int] | None:
    """(reports_generated, certifications_completed, documents_generated), None without a row."""
    row = (
        await session.execute(
            text(
                "SELECT reports_generated, certifications_completed, documents_generated"
                " FROM user_metrics WHERE user_id = :u"
            ),
            {"u": user_id},
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1], row[2])


async def true_counts(session: AsyncSession, user_id: uuid.UUID) -> tuple[int, int, int]:
    """What the counters must equal: the user's reports, completed certifications, documents."""
    row = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM reports WHERE user_id = :u),"
                " (SELECT count(*) FROM certification_progress"
                "  WHERE user_id = :u AND status = 'completed'),"
                " (SELECT count(*) FROM generated_documents WHERE user_id = :u)"
            ),
            {"u": user_id},
        )
    ).one()
    return (row[0], row[1], row[2])


async def count_rows(session: AsyncSession, table: str, **where: Any) -> int:
    """Rows of `table` matching `where` (column = value), read with a fresh query."""
    assert table in (*TABLES, "user_metrics")
    condition = " AND ".join(f"{column} = :{column}" for column in where) or "true"
    statement = text(f"SELECT count(*) FROM {table} WHERE {condition}")
    return int((await session.execute(statement, where)).scalar_one())


async def row(session: AsyncSession, table: str, row_id: uuid.UUID) -> dict[str, Any]:
    """A row as the database holds it now."""
    assert table in TABLES
    result = await session.execute(text(f"SELECT * FROM {table} WHERE id = :i"), {"i": row_id})
    return dict(result.mappings().one())


async def new_report(repo: ReportRepository, user: User, **overrides: Any) -> ReportView:
    fields: dict[str, Any] = {
        "product_name": "Basmati rice",
        "destination_country": "United Arab Emirates",
        "report_data": {"hs_code": "1006.30", "certifications": ["APEDA"]},
    } | overrides
    return await repo.create(user_id=user.id, **fields)


async def add_children(repo: ReportRepository, report: Report | ReportView, many: int) -> None:
    """`many` certifications and documents and `2 * many` plan tasks on all seven days."""
    for i in range(many):
        await repo.add_certification(
            report.id,
            user_id=report.user_id,
            certification_id=f"C{i}",
            certification_name=f"Cert {i}",
            certification_type="mandatory",
        )
        await repo.add_document(
            report.id, user_id=report.user_id, document_type="invoice", document_data={"n": i}
        )
    tasks = [
        {"task_id": f"t{i}", "day_number": 7 - i % 7, "task_title": f"Task {i}"}
        for i in range(many * 2)
    ]
    await repo.save_action_plan(report.id, user_id=report.user_id, tasks=tasks)
