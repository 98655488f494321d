"""A row's life in the schema: updated_at trigger, cascading deletes, time-ordered ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.models import (
    ActionPlanProgress,
    CertificationProgress,
    ChatMessage,
    ChatSession,
    FinanceAnalysis,
    GeneratedDocument,
    LogisticsAnalysis,
    User,
    UserMetrics,
    new_id,
)
from tests.factories import PASSWORD_HASH, make_report, make_user, unique
from tests.rows import ALL_TABLES, UPDATED_AT_TABLES, Graph, exists, seed_graph

PAST = datetime(2020, 1, 1, tzinfo=UTC)


async def _stamps(session: AsyncSession, table: str, row_id: uuid.UUID) -> tuple[datetime, ...]:
    sql = f"SELECT created_at, updated_at, now() FROM {table} WHERE id = :id"
    return tuple((await session.execute(text(sql), {"id": row_id})).one())


@pytest.mark.parametrize("table", UPDATED_AT_TABLES)
async def test_the_trigger_moves_updated_at_on_a_raw_update(
    db_session: AsyncSession, table: str
) -> None:
    g = await seed_graph(db_session, stamp=PAST)
    assert await _stamps(db_session, table, g.ids[table]) == (PAST, PAST, await _now(db_session))
    sql = f"UPDATE {table} SET user_id = user_id WHERE id = :id"
    if table == "users":
        sql = "UPDATE users SET company_name = 'Kanpur Leather' WHERE id = :id"
    await db_session.execute(text(sql), {"id": g.ids[table]})
    created, updated, now = await _stamps(db_session, table, g.ids[table])
    assert (created, updated) == (PAST, now)


@pytest.mark.parametrize("table", UPDATED_AT_TABLES)
async def test_the_trigger_overrides_an_explicit_updated_at(
    db_session: AsyncSession, table: str
) -> None:
    g = await seed_graph(db_session)
    sql = f"UPDATE {table} SET updated_at = :past WHERE id = :id"
    await db_session.execute(text(sql), {"past": PAST, "id": g.ids[table]})
    _created, updated, now = await _stamps(db_session, table, g.ids[table])
    assert updated == now


async def test_an_orm_update_reads_back_the_triggered_updated_at(db_session: AsyncSession) -> None:
    user = await make_user(db_session, last_login=PAST)
    await db_session.execute(
        text("UPDATE users SET updated_at = :past WHERE id = :id"), {"past": PAST, "id": user.id}
    )
    user.company_name = "Moradabad Brassware"
    await db_session.flush()
    assert user.updated_at == await _now(db_session)


async def _now(session: AsyncSession) -> datetime:
    now: datetime = (await session.execute(text("SELECT now()"))).scalar_one()
    return now


async def _surviving(session: AsyncSession, g: Graph) -> set[str]:
    found = {t for t in ALL_TABLES if await exists(session, t, g.ids[t])}
    if await exists(session, "chat_sessions", g.general_session_id):
        found.add("general chat")
    if await exists(session, "chat_messages", g.general_message_id):
        found.add("general message")
    return found


async def test_deleting_a_user_deletes_all_their_rows(db_session: AsyncSession) -> None:
    doomed, kept = await seed_graph(db_session), await seed_graph(db_session)
    everything = {*ALL_TABLES, "general chat", "general message"}
    assert await _surviving(db_session, doomed) == everything
    await db_session.execute(text("DELETE FROM users WHERE id = :id"), {"id": doomed.user_id})
    assert await _surviving(db_session, doomed) == set()
    assert await _surviving(db_session, kept) == everything


async def test_deleting_a_report_deletes_what_hangs_off_it(db_session: AsyncSession) -> None:
    g, kept = await seed_graph(db_session), await seed_graph(db_session)
    await db_session.execute(text("DELETE FROM reports WHERE id = :id"), {"id": g.report_id})
    # the user, their metrics and their general chat (no report) stay
    assert await _surviving(db_session, g) == {
        "users",
        "user_metrics",
        "general chat",
        "general message",
    }
    assert await _surviving(db_session, kept) == {*ALL_TABLES, "general chat", "general message"}


async def test_deleting_a_chat_session_deletes_its_messages(db_session: AsyncSession) -> None:
    g = await seed_graph(db_session)
    sql = text("DELETE FROM chat_sessions WHERE id = :id")
    await db_session.execute(sql, {"id": g.ids["chat_sessions"]})
    assert not await exists(db_session, "chat_messages", g.ids["chat_messages"])
    assert await exists(db_session, "chat_messages", g.general_message_id)
    assert await exists(db_session, "reports", g.report_id)


def _uuid7_time(value: uuid.UUID) -> datetime:
    return datetime.fromtimestamp((value.int >> 80) / 1000, UTC)


async def test_the_app_generates_time_ordered_uuid7_ids(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    session = ChatSession(user_id=user.id, report_id=report.id)
    db_session.add(session)
    await db_session.flush()
    rows: list[Any] = [
        UserMetrics(user_id=user.id),
        CertificationProgress(
            user_id=user.id,
            report_id=report.id,
            certification_id="FSSAI",
            certification_name="FSSAI licence",
            certification_type="IN",
        ),
        GeneratedDocument(
            user_id=user.id, report_id=report.id, document_type="packing_list", document_data={}
        ),
        ActionPlanProgress(
            user_id=user.id, report_id=report.id, task_id="a", day_number=3, task_title="AD code"
        ),
        FinanceAnalysis(user_id=user.id, report_id=report.id, working_capital_data={}),
        LogisticsAnalysis(user_id=user.id, report_id=report.id),
        ChatMessage(session_id=session.id, role="assistant", content="Use HS 0910.30"),
    ]
    db_session.add_all(rows)
    await db_session.flush()
    ids = [user.id, report.id, session.id, *(row.id for row in rows)]
    assert [i.version for i in ids] == [7] * len(ids)
    assert ids[:3] == sorted(ids[:3])  # created one after another: increasing
    for value in ids:  # the embedded timestamp is the wall clock
        assert abs(_uuid7_time(value) - datetime.now(UTC)) < timedelta(seconds=5)


async def test_core_inserts_get_uuid7_ids_and_they_sort_by_creation(
    db_session: AsyncSession,
) -> None:
    emails = [f"{unique('seq')}@example.in" for _ in range(50)]
    values = {"password_hash": PASSWORD_HASH, "business_type": "SaaS", "company_size": "Micro"}
    ids = []
    for email in emails:  # one statement each, so each row gets the next id
        stmt = insert(User).values(email=email, **values).returning(User.id)
        ids.append((await db_session.execute(stmt)).scalar_one())
    assert all(i.version == 7 for i in ids)
    by_id = await db_session.scalars(select(User.email).where(User.id.in_(ids)).order_by(User.id))
    assert by_id.all() == emails
    fresh = [new_id() for _ in range(1000)]
    assert fresh == sorted(fresh) and len(set(fresh)) == 1000
