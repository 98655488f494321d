"""The migrated database's catalog equals SCHEMA.md, written out here by hand (not from models).

Exact comparisons of columns (type, nullability, default), constraints, indexes and triggers.
Where the project chose more than SCHEMA.md states, the entry says so.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.rows import ALL_TABLES

UUID, TEXT, INT, BOOL, JSON = "uuid", "text", "integer", "boolean", "jsonb"
TS = "timestamp with time zone"  # improved: every timestamp is timestamptz
NN, NULL = "NO", "YES"  # information_schema's is_nullable


def vc(n: int) -> str:
    return f"character varying({n})"


def num(p: int, s: int) -> str:
    return f"numeric({p},{s})"


def default_text(value: str) -> str:
    return f"'{value}'::character varying"


Columns = dict[str, tuple[str, str, str | None]]
ID: Columns = {"id": (UUID, NN, "gen_random_uuid()")}
# SCHEMA.md: created_at/updated_at default to now(); the project also makes them NOT NULL.
CREATED: Columns = {"created_at": (TS, NN, "now()")}
STAMPS: Columns = CREATED | {"updated_at": (TS, NN, "now()")}
OWNER: Columns = {"user_id": (UUID, NN, None)}  # improved: owner FKs are NOT NULL
REPORT_OWNER: Columns = OWNER | {"report_id": (UUID, NN, None)}

COLUMNS: dict[str, Columns] = {
    "users": ID
    | {
        "email": (vc(255), NN, None),
        "password_hash": (vc(255), NN, None),
        "business_type": (vc(50), NN, None),
        "company_size": (vc(50), NN, None),
        "company_name": (vc(255), NULL, None),
        "monthly_volume": (INT, NULL, None),
        "last_login": (TS, NULL, None),
    }
    | STAMPS,
    "reports": ID
    | OWNER
    | {
        "product_name": (vc(255), NN, None),
        "product_image_url": (vc(500), NULL, None),
        "ingredients": (TEXT, NULL, None),
        "bom": (TEXT, NULL, None),
        "destination_country": (vc(100), NN, None),
        "business_type": (vc(50), NN, None),
        "company_size": (vc(50), NN, None),
        "monthly_volume": (INT, NULL, None),
        "price_range": (vc(100), NULL, None),
        "payment_mode": (vc(100), NULL, None),
        "hs_code": (vc(20), NULL, None),
        "hs_code_confidence": (num(5, 2), NULL, None),
        "risk_score": (INT, NULL, None),
        "estimated_cost": (num(12, 2), NULL, None),
        "estimated_timeline_days": (INT, NULL, None),
        "report_data": (JSON, NN, None),
        "status": (vc(50), NN, default_text("completed")),
    }
    | STAMPS,
    "certification_progress": ID
    | REPORT_OWNER
    | {
        "certification_id": (vc(100), NN, None),
        "certification_name": (vc(255), NN, None),
        "certification_type": (vc(50), NN, None),
        "status": (vc(50), NN, default_text("not_started")),
        "documents_completed": (JSON, NN, "'[]'::jsonb"),
        "notes": (TEXT, NULL, None),
        "started_at": (TS, NULL, None),
        "completed_at": (TS, NULL, None),
    }
    | STAMPS,
    "generated_documents": ID
    | REPORT_OWNER
    | {
        "document_type": (vc(100), NN, None),
        "document_data": (JSON, NN, None),
        "pdf_url": (vc(500), NULL, None),
        "editable_url": (vc(500), NULL, None),
        "validation_results": (JSON, NULL, None),
        "is_valid": (BOOL, NN, "false"),
    }
    | STAMPS,
    "action_plan_progress": ID
    | REPORT_OWNER
    | {
        "task_id": (vc(100), NN, None),
        "day_number": (INT, NN, None),
        "task_title": (vc(255), NN, None),
        "task_description": (TEXT, NULL, None),
        "task_category": (vc(50), NULL, None),
        "completed": (BOOL, NN, "false"),
        "completed_at": (TS, NULL, None),
    }
    | STAMPS,
    "chat_sessions": ID
    | OWNER
    | {
        "report_id": (UUID, NULL, None),  # a general chat has no report
        "context_data": (JSON, NULL, None),
        "last_activity": (TS, NN, "now()"),
        "expires_at": (TS, NULL, None),
    }
    | CREATED,
    "chat_messages": ID
    | {
        "session_id": (UUID, NN, None),
        "role": (vc(20), NN, None),
        "content": (TEXT, NN, None),
        "sources": (JSON, NULL, None),
    }
    | CREATED,
    "finance_analysis": ID
    | REPORT_OWNER
    | {"working_capital_data": (JSON, NN, None)}
    | {
        name: (JSON, NULL, None)
        for name in (
            "pre_shipment_credit_data",
            "rodtep_benefit_data",
            "gst_refund_data",
            "cash_flow_timeline",
            "financing_options",
        )
    }
    | STAMPS,
    "logistics_analysis": ID
    | REPORT_OWNER
    | {
        name: (JSON, NULL, None)
        for name in (
            "lcl_fcl_comparison",
            "rms_probability_data",
            "route_analysis",
            "freight_estimate",
            "insurance_recommendation",
        )
    }
    | STAMPS,
    "user_metrics": ID
    | OWNER
    | {
        name: (INT, NN, "0")
        for name in (
            "reports_generated",
            "certifications_completed",
            "documents_generated",
            "exports_completed",
        )
    }
    | {
        "cost_savings": (num(12, 2), NN, "0"),
        "timeline_reduction_days": (INT, NN, "0"),
        "last_export_date": (TS, NULL, None),
    }
    | STAMPS,
}


async def _rows(session: AsyncSession, sql: str) -> list[tuple[str, ...]]:
    return [tuple(row) for row in (await session.execute(text(sql))).all()]


async def test_exactly_the_ten_tables_exist(db_session: AsyncSession) -> None:
    rows = await _rows(
        db_session,
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    assert {name for (name,) in rows} == {*ALL_TABLES, "alembic_version"}
    assert set(COLUMNS) == set(ALL_TABLES)


async def test_every_column_type_nullability_and_default(db_session: AsyncSession) -> None:
    rows = await _rows(
        db_session,
        "SELECT c.table_name, c.column_name, format_type(a.atttypid, a.atttypmod),"
        " c.is_nullable, c.column_default"
        " FROM information_schema.columns c JOIN pg_attribute a"
        " ON a.attrelid = format('public.%I', c.table_name)::regclass"
        " AND a.attname = c.column_name"
        " WHERE c.table_schema = 'public' AND c.table_name <> 'alembic_version'",
    )
    actual: dict[str, dict[str, tuple[str, str, str | None]]] = defaultdict(dict)
    for table, column, kind, nullable, default in rows:
        actual[table][column] = (kind, nullable, default)
    for table, columns in COLUMNS.items():
        assert actual[table] == columns, table
    assert set(actual) == set(COLUMNS)
