"""Rows in all ten tables written with raw SQL (no ORM, no app defaults), for schema tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import PASSWORD_HASH, unique

# SCHEMA.md, "Triggers": the tables whose updated_at the shared trigger moves.
UPDATED_AT_TABLES = (
    "users",
    "reports",
    "certification_progress",
    "generated_documents",
    "action_plan_progress",
    "finance_analysis",
    "logistics_analysis",
    "user_metrics",
)
ALL_TABLES = (*UPDATED_AT_TABLES, "chat_sessions", "chat_messages")


@dataclass
class Graph:
    """One user's rows: `ids[table]` is the id of its row in each table."""

    ids: dict[str, uuid.UUID] = field(default_factory=dict)
    general_session_id: uuid.UUID | None = None  # a chat without a report
    general_message_id: uuid.UUID | None = None

    @property
    def user_id(self) -> uuid.UUID:
        return self.ids["users"]

    @property
    def report_id(self) -> uuid.UUID:
        return self.ids["reports"]


async def insert(session: AsyncSession, table: str, **values: Any) -> uuid.UUID:
    """INSERT one row with only the given columns (JSON values bound as JSONB); its id."""
    names = ", ".join(values)
    params = ", ".join(f":{name}" for name in values)
    stmt = text(f"INSERT INTO {table} ({names}) VALUES ({params}) RETURNING id")
    typed = [bindparam(k, type_=JSONB) for k, v in values.items() if isinstance(v, dict | list)]
    if typed:
        stmt = stmt.bindparams(*typed)
    row_id: uuid.UUID = (await session.execute(stmt, values)).scalar_one()
    return row_id


async def seed_graph(session: AsyncSession, *, stamp: datetime | None = None) -> Graph:
    """A user with one row in every table, plus a general chat; timestamps `stamp` if given."""

    def stamped(table: str) -> dict[str, Any]:
        if stamp is None:
            return {}
        if table in UPDATED_AT_TABLES:
            return {"created_at": stamp, "updated_at": stamp}
        return {"created_at": stamp}

    g = Graph()
    g.ids["users"] = await insert(
        session,
        "users",
        email=f"{unique('raw')}@example.in",
        password_hash=PASSWORD_HASH,
        business_type="Manufacturing",
        company_size="Small",
        **stamped("users"),
    )
    owner = {"user_id": g.user_id}
    g.ids["reports"] = await insert(
        session,
        "reports",
        **owner,
        product_name="Basmati rice",
        destination_country="Germany",
        business_type="Merchant",
        company_size="Micro",
        report_data={"summary": "EU organic certification"},
        **stamped("reports"),
    )
    child = owner | {"report_id": g.report_id}
    children: dict[str, dict[str, Any]] = {
        "certification_progress": {
            "certification_id": "REACH",
            "certification_name": "REACH registration",
            "certification_type": "EU",
        },
        "generated_documents": {"document_type": "commercial_invoice", "document_data": {}},
        "action_plan_progress": {"task_id": "t1", "day_number": 1, "task_title": "Get IEC"},
        "finance_analysis": {"working_capital_data": {"need_inr": 250000}},
        "logistics_analysis": {},
        "chat_sessions": {},
    }
    for table, values in children.items():
        g.ids[table] = await insert(session, table, **child, **values, **stamped(table))
    g.ids["user_metrics"] = await insert(
        session, "user_metrics", **owner, **stamped("user_metrics")
    )
    g.ids["chat_messages"] = await insert(
        session,
        "chat_messages",
        session_id=g.ids["chat_sessions"],
        role="user",
        content="Which HS code fits?",
        **stamped("chat_messages"),
    )
    g.general_session_id = await insert(session, "chat_sessions", **owner)
    g.general_message_id = await insert(
        session, "chat_messages", session_id=g.general_session_id, role="assistant", content="Hi"
    )
    return g


async def exists(session: AsyncSession, table: str, row_id: uuid.UUID | None) -> bool:
    stmt = text(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE id = :id)")
    return bool((await session.execute(stmt, {"id": row_id})).scalar_one())


async def violation(
    session: AsyncSession, sql: str, params: dict[str, Any] | None = None
) -> tuple[str, str]:
    """Run `sql` in a savepoint; it must fail: (SQLSTATE, constraint or column name)."""
    try:
        async with session.begin_nested():
            await session.execute(text(sql), params or {})
    except DBAPIError as exc:
        driver = exc.orig.__cause__ if exc.orig is not None else None
        name = getattr(driver, "constraint_name", None) or getattr(driver, "column_name", None)
        return getattr(driver, "sqlstate", ""), name or ""
    raise AssertionError(f"the database accepted: {sql} {params}")
