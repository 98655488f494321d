"""The schema's rules hold for raw SQL too: checks, unique email, NOT NULL owners, defaults."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.rows import seed_graph, violation
from tests.test_schema_constraints import (
    BUSINESS_TYPES,
    CERTIFICATION_STATUSES,
    COMPANY_SIZES,
    REPORT_STATUSES,
    ROLES,
)

CHECK_VIOLATION, UNIQUE_VIOLATION, NOT_NULL_VIOLATION = "23514", "23505", "23502"

# (table, column, bad value, the CHECK constraint that must reject it)
REJECTED: list[tuple[str, str, Any, str]] = [
    ("users", "business_type", "Retail", "ck_users_business_type"),
    ("users", "business_type", "manufacturing", "ck_users_business_type"),
    ("users", "company_size", "Large", "ck_users_company_size"),
    ("users", "monthly_volume", -1, "ck_users_monthly_volume_non_negative"),
    ("reports", "business_type", "saas", "ck_reports_business_type"),
    ("reports", "company_size", "Enterprise", "ck_reports_company_size"),
    ("reports", "status", "done", "ck_reports_status"),
    ("reports", "risk_score", -1, "ck_reports_risk_score_range"),
    ("reports", "risk_score", 101, "ck_reports_risk_score_range"),
    ("reports", "hs_code_confidence", Decimal("100.01"), "ck_reports_hs_code_confidence_range"),
    ("reports", "hs_code_confidence", Decimal("-0.01"), "ck_reports_hs_code_confidence_range"),
    ("reports", "monthly_volume", -1, "ck_reports_non_negative"),
    ("reports", "estimated_cost", Decimal("-0.01"), "ck_reports_non_negative"),
    ("reports", "estimated_timeline_days", -1, "ck_reports_non_negative"),
    ("certification_progress", "status", "pending", "ck_certification_progress_status"),
    ("action_plan_progress", "day_number", 0, "ck_action_plan_progress_day_number_range"),
    ("action_plan_progress", "day_number", 8, "ck_action_plan_progress_day_number_range"),
    ("chat_messages", "role", "system", "ck_chat_messages_role"),
    *[
        ("user_metrics", column, -1, "ck_user_metrics_counters_non_negative")
        for column in (
            "reports_generated",
            "certifications_completed",
            "documents_generated",
            "exports_completed",
            "cost_savings",
            "timeline_reduction_days",
        )
    ],
]

ACCEPTED: list[tuple[str, str, tuple[Any, ...]]] = [
    ("users", "business_type", BUSINESS_TYPES),
    ("users", "company_size", COMPANY_SIZES),
    ("reports", "status", REPORT_STATUSES),
    ("reports", "risk_score", (0, 100)),
    ("reports", "hs_code_confidence", (Decimal(0), Decimal(100))),
    ("certification_progress", "status", CERTIFICATION_STATUSES),
    ("action_plan_progress", "day_number", (1, 7)),
    ("chat_messages", "role", ROLES),
]

# Improved: owner foreign keys are NOT NULL (chat_sessions.report_id stays optional).
OWNER_COLUMNS = [
    ("reports", "user_id"),
    *[
        (table, column)
        for table in (
            "certification_progress",
            "generated_documents",
            "action_plan_progress",
            "finance_analysis",
            "logistics_analysis",
        )
        for column in ("user_id", "report_id")
    ],
    ("chat_sessions", "user_id"),
    ("chat_messages", "session_id"),
    ("user_metrics", "user_id"),
]


async def _value(session: AsyncSession, table: str, column: str, row_id: uuid.UUID) -> Any:
    sql = f"SELECT {column} FROM {table} WHERE id = :id"
    return (await session.execute(text(sql), {"id": row_id})).scalar_one()


@pytest.mark.parametrize(("table", "column", "bad", "constraint"), REJECTED)
async def test_each_check_rejects_a_bad_value(
    db_session: AsyncSession, table: str, column: str, bad: Any, constraint: str
) -> None:
    g = await seed_graph(db_session)
    before = await _value(db_session, table, column, g.ids[table])
    sql = f"UPDATE {table} SET {column} = :v WHERE id = :id"
    assert await violation(db_session, sql, {"v": bad, "id": g.ids[table]}) == (
        CHECK_VIOLATION,
        constraint,
    )
    assert await _value(db_session, table, column, g.ids[table]) == before


@pytest.mark.parametrize(("table", "column", "values"), ACCEPTED)
async def test_each_check_accepts_every_allowed_value(
    db_session: AsyncSession, table: str, column: str, values: tuple[Any, ...]
) -> None:
    g = await seed_graph(db_session)
    for value in values:
        sql = f"UPDATE {table} SET {column} = :v WHERE id = :id"
        await db_session.execute(text(sql), {"v": value, "id": g.ids[table]})
        assert await _value(db_session, table, column, g.ids[table]) == value


async def test_email_is_unique_case_insensitively(db_session: AsyncSession) -> None:
    g = await seed_graph(db_session)
    email = await _value(db_session, "users", "email", g.user_id)
    other = await seed_graph(db_session)
    sql = "UPDATE users SET email = :e WHERE id = :id"
    for taken in (email, email.upper(), email.title()):
        assert await violation(db_session, sql, {"e": taken, "id": other.user_id}) == (
            UNIQUE_VIOLATION,
            "uq_users_lower_email",
        )
    await db_session.execute(text(sql), {"e": "x" + email, "id": other.user_id})
    assert await _value(db_session, "users", "email", other.user_id) == "x" + email


@pytest.mark.parametrize(("table", "column"), OWNER_COLUMNS)
async def test_owner_foreign_keys_are_not_null(
    db_session: AsyncSession, table: str, column: str
) -> None:
    g = await seed_graph(db_session)
    sql = f"UPDATE {table} SET {column} = NULL WHERE id = :id"
    assert await violation(db_session, sql, {"id": g.ids[table]}) == (NOT_NULL_VIOLATION, column)


async def test_a_general_chat_session_needs_no_report(db_session: AsyncSession) -> None:
    g = await seed_graph(db_session)
    assert g.general_session_id is not None
    assert await _value(db_session, "chat_sessions", "report_id", g.general_session_id) is None


async def test_server_defaults_fill_raw_sql_inserts(db_session: AsyncSession) -> None:
    g = await seed_graph(db_session)  # inserts give no id, timestamps, status or counters
    now: datetime = (await db_session.execute(text("SELECT now()"))).scalar_one()
    for table, row_id in g.ids.items():
        assert row_id.version == 4, table  # gen_random_uuid(), not the app's UUIDv7
        assert await _value(db_session, table, "created_at", row_id) == now, table
    for table in ("users", "reports", "user_metrics", "finance_analysis"):
        assert await _value(db_session, table, "updated_at", g.ids[table]) == now
    assert await _value(db_session, "chat_sessions", "last_activity", g.ids["chat_sessions"]) == now

    row = (
        await db_session.execute(
            text(
                "SELECT r.status, c.status, c.documents_completed, d.is_valid, a.completed,"
                " m.reports_generated, m.certifications_completed, m.documents_generated,"
                " m.exports_completed, m.cost_savings, m.timeline_reduction_days"
                " FROM reports r, certification_progress c, generated_documents d,"
                " action_plan_progress a, user_metrics m"
                " WHERE r.id = :r AND c.id = :c AND d.id = :d AND a.id = :a AND m.id = :m"
            ),
            {
                "r": g.report_id,
                "c": g.ids["certification_progress"],
                "d": g.ids["generated_documents"],
                "a": g.ids["action_plan_progress"],
                "m": g.ids["user_metrics"],
            },
        )
    ).one()
    assert tuple(row) == ("completed", "not_started", [], False, False, 0, 0, 0, 0, Decimal(0), 0)


async def test_a_task_id_is_unique_within_a_report_only(db_session: AsyncSession) -> None:
    g = await seed_graph(db_session)
    other = await seed_graph(db_session)
    task = {"user_id": g.user_id, "task_id": "t1", "day_number": 2, "task_title": "Again"}
    sql = (
        "INSERT INTO action_plan_progress (user_id, report_id, task_id, day_number, task_title)"
        " VALUES (:user_id, :report_id, :task_id, :day_number, :task_title)"
    )
    assert await violation(db_session, sql, task | {"report_id": g.report_id}) == (
        UNIQUE_VIOLATION,
        "uq_action_plan_progress_report_id_task_id",
    )
    count = (
        "SELECT count(*) FROM action_plan_progress WHERE task_id = 't1' AND report_id IN (:a, :b)"
    )
    both = {"a": g.report_id, "b": other.report_id}  # each graph has its own task "t1"
    assert (await db_session.execute(text(count), both)).scalar_one() == 2


@pytest.mark.parametrize("table", ["finance_analysis", "logistics_analysis"])
async def test_one_analysis_per_report(db_session: AsyncSession, table: str) -> None:
    g = await seed_graph(db_session)
    extra = ", working_capital_data" if table == "finance_analysis" else ""
    value = ", '{}'" if extra else ""
    sql = f"INSERT INTO {table} (user_id, report_id{extra}) VALUES (:u, :r{value})"
    assert await violation(db_session, sql, {"u": g.user_id, "r": g.report_id}) == (
        UNIQUE_VIOLATION,
        f"uq_{table}_report_id",
    )
