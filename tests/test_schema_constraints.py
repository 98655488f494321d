"""Constraints, indexes and triggers of the migrated database equal SCHEMA.md, exactly.

The expected definitions are written out by hand, in PostgreSQL's own deparsed form.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.rows import ALL_TABLES, UPDATED_AT_TABLES

BUSINESS_TYPES = ("Manufacturing", "SaaS", "Merchant")
COMPANY_SIZES = ("Micro", "Small", "Medium")
REPORT_STATUSES = ("processing", "completed", "failed")
CERTIFICATION_STATUSES = ("not_started", "in_progress", "completed", "rejected")
ROLES = ("user", "assistant")


def one_of(column: str, values: tuple[str, ...]) -> str:
    array = ", ".join(f"'{v}'::character varying" for v in values)
    return f"CHECK ((({column})::text = ANY ((ARRAY[{array}])::text[])))"


def cascade(column: str, table: str) -> str:
    return f"FOREIGN KEY ({column}) REFERENCES {table}(id) ON DELETE CASCADE"


def pk(table: str) -> dict[str, str]:
    return {f"pk_{table}": "PRIMARY KEY (id)"}


def fk(table: str, column: str, parent: str) -> dict[str, str]:
    return {f"fk_{table}_{column}_{parent}": cascade(column, parent)}


def owned(table: str) -> dict[str, str]:
    return pk(table) | fk(table, "user_id", "users") | fk(table, "report_id", "reports")


# Primary, foreign, unique and check constraints (NOT NULL is in test_schema.py's columns).
# Non-negativity checks of counts and money are the project's "ranges carry CHECKs".
CONSTRAINTS: dict[str, dict[str, str]] = {
    "users": pk("users")
    | {
        "ck_users_business_type": one_of("business_type", BUSINESS_TYPES),
        "ck_users_company_size": one_of("company_size", COMPANY_SIZES),
        "ck_users_monthly_volume_non_negative": "CHECK ((monthly_volume >= 0))",
    },
    "reports": pk("reports")
    | fk("reports", "user_id", "users")
    | {
        "ck_reports_business_type": one_of("business_type", BUSINESS_TYPES),
        "ck_reports_company_size": one_of("company_size", COMPANY_SIZES),
        "ck_reports_status": one_of("status", REPORT_STATUSES),
        "ck_reports_risk_score_range": "CHECK (((risk_score >= 0) AND (risk_score <= 100)))",
        "ck_reports_hs_code_confidence_range": "CHECK (((hs_code_confidence >= (0)::numeric)"
        " AND (hs_code_confidence <= (100)::numeric)))",
        "ck_reports_non_negative": "CHECK (((monthly_volume >= 0)"
        " AND (estimated_cost >= (0)::numeric) AND (estimated_timeline_days >= 0)))",
    },
    "certification_progress": owned("certification_progress")
    | {"ck_certification_progress_status": one_of("status", CERTIFICATION_STATUSES)},
    "generated_documents": owned("generated_documents"),
    "action_plan_progress": owned("action_plan_progress")
    | {
        "uq_action_plan_progress_report_id_task_id": "UNIQUE (report_id, task_id)",
        "ck_action_plan_progress_day_number_range": "CHECK (((day_number >= 1)"
        " AND (day_number <= 7)))",
    },
    "chat_sessions": owned("chat_sessions"),
    "chat_messages": pk("chat_messages")
    | fk("chat_messages", "session_id", "chat_sessions")
    | {"ck_chat_messages_role": one_of("role", ROLES)},
    "finance_analysis": owned("finance_analysis")
    | {"uq_finance_analysis_report_id": "UNIQUE (report_id)"},  # improved: one per report
    "logistics_analysis": owned("logistics_analysis")
    | {"uq_logistics_analysis_report_id": "UNIQUE (report_id)"},
    "user_metrics": pk("user_metrics")
    | fk("user_metrics", "user_id", "users")
    | {
        "uq_user_metrics_user_id": "UNIQUE (user_id)",
        "ck_user_metrics_counters_non_negative": "CHECK (((reports_generated >= 0)"
        " AND (certifications_completed >= 0) AND (documents_generated >= 0)"
        " AND (exports_completed >= 0) AND (cost_savings >= (0)::numeric)"
        " AND (timeline_reduction_days >= 0)))",
    },
}


def ix(table: str, *columns: str, unique: bool = False, name: str | None = None) -> dict[str, str]:
    name = name or f"ix_{table}_{'_'.join(c.split()[0] for c in columns)}"
    kind = "UNIQUE INDEX" if unique else "INDEX"
    return {name: f"CREATE {kind} {name} ON public.{table} USING btree ({', '.join(columns)})"}


def keys(table: str, *owner_columns: str) -> dict[str, str]:
    """The primary-key index and one index per owner column."""
    indexes = ix(table, "id", unique=True, name=f"pk_{table}")
    for column in owner_columns:
        indexes |= ix(table, column)
    return indexes


INDEXES: dict[str, dict[str, str]] = {
    # "Indexes: email" is the case-insensitive unique index on lower(email).
    "users": keys("users")
    | ix("users", "lower((email)::text)", unique=True, name="uq_users_lower_email")
    | ix("users", "business_type"),
    "reports": keys("reports", "user_id")
    | ix("reports", "hs_code")
    | ix("reports", "destination_country")
    | ix("reports", "created_at DESC")
    # improved: a user's latest reports; the id breaks ties for keyset pagination
    | ix(
        "reports",
        "user_id",
        "created_at DESC",
        "id DESC",
        name="ix_reports_user_id_created_at",
    ),
    "certification_progress": keys("certification_progress", "user_id", "report_id")
    | ix("certification_progress", "status"),
    "generated_documents": keys("generated_documents", "user_id", "report_id")
    | ix("generated_documents", "document_type"),
    "action_plan_progress": keys("action_plan_progress", "user_id", "report_id")
    | ix("action_plan_progress", "completed")
    | ix(
        "action_plan_progress",
        "report_id",
        "task_id",
        unique=True,
        name="uq_action_plan_progress_report_id_task_id",
    ),
    "chat_sessions": keys("chat_sessions", "user_id", "report_id")
    | ix("chat_sessions", "expires_at"),
    "chat_messages": keys("chat_messages", "session_id")
    | ix("chat_messages", "created_at")
    # improved: a session's history in order (the id breaks ties)
    | ix(
        "chat_messages",
        "session_id",
        "created_at",
        "id",
        name="ix_chat_messages_session_id_created_at",
    ),
    # the unique constraint on report_id is the report_id index
    "finance_analysis": keys("finance_analysis", "user_id")
    | ix("finance_analysis", "report_id", unique=True, name="uq_finance_analysis_report_id"),
    "logistics_analysis": keys("logistics_analysis", "user_id")
    | ix("logistics_analysis", "report_id", unique=True, name="uq_logistics_analysis_report_id"),
    "user_metrics": keys("user_metrics")
    | ix("user_metrics", "user_id", unique=True, name="uq_user_metrics_user_id"),
}


def by_table(rows: list[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for table, name, definition in rows:
        found[table][name] = definition
    return dict(found)


async def _rows(session: AsyncSession, sql: str) -> list[tuple[str, str, str]]:
    return [(a, b, c) for a, b, c in (await session.execute(text(sql))).all()]


async def test_every_constraint_is_exactly_as_specified(db_session: AsyncSession) -> None:
    rows = await _rows(
        db_session,
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'f', 'u', 'c')"
        " AND conrelid <> 'alembic_version'::regclass",
    )
    assert set(CONSTRAINTS) == set(ALL_TABLES)
    assert by_table(rows) == CONSTRAINTS


async def test_every_index_is_exactly_as_specified(db_session: AsyncSession) -> None:
    rows = await _rows(
        db_session,
        "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'",
    )
    assert set(INDEXES) == set(ALL_TABLES)
    assert by_table(rows) == INDEXES


async def test_one_shared_updated_at_trigger_per_table_that_has_updated_at(
    db_session: AsyncSession,
) -> None:
    rows = await _rows(
        db_session,
        "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger"
        " WHERE NOT tgisinternal",
    )
    expected = {
        table: {
            f"trg_{table}_updated_at": f"CREATE TRIGGER trg_{table}_updated_at BEFORE UPDATE"
            f" ON public.{table} FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
        }
        for table in UPDATED_AT_TABLES
    }
    assert by_table(rows) == expected
    functions = await db_session.execute(
        text(
            "SELECT p.proname FROM pg_proc p JOIN pg_trigger t ON t.tgfoid = p.oid"
            " WHERE NOT t.tgisinternal GROUP BY p.proname"
        )
    )
    assert functions.scalars().all() == ["set_updated_at"]
