"""Every repository method, called by another user with the owner's ids: `NotFoundError`
(or nothing found), and not a byte of any table changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db import (
    AnalysisRepository,
    ChatRepository,
    NotFoundError,
    ReportRepository,
)
from tests.factories import make_user

TABLES = (
    "users",
    "reports",
    "certification_progress",
    "generated_documents",
    "action_plan_progress",
    "chat_sessions",
    "chat_messages",
    "finance_analysis",
    "logistics_analysis",
    "user_metrics",
)


async def snapshot(session: AsyncSession) -> dict[str, str]:
    """A digest of every row of every table."""
    digests = {}
    for table in TABLES:
        query = (
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        )
        digests[table] = (await session.execute(text(query))).scalar_one()
    return digests


async def owned_world(session: AsyncSession) -> tuple[Any, dict[str, Any]]:
    """An owner with one of everything, and the ids an intruder will try."""
    owner = await make_user(session)
    reports, chats, analyses = (
        ReportRepository(session),
        ChatRepository(session),
        AnalysisRepository(session),
    )
    report = await reports.create(
        user_id=owner.id,
        product_name="Cashew kernels W320",
        destination_country="Netherlands",
        report_data={"a": 1},
    )
    cert = await reports.add_certification(
        report.id,
        user_id=owner.id,
        certification_id="FSSAI",
        certification_name="FSSAI licence",
        certification_type="food",
    )
    await reports.add_document(
        report.id, user_id=owner.id, document_type="packing_list", document_data={"boxes": 12}
    )
    await reports.save_action_plan(
        report.id,
        user_id=owner.id,
        tasks=[{"task_id": "iec", "day_number": 1, "task_title": "Apply for IEC"}],
    )
    chat = await chats.create_session(user_id=owner.id, report_id=report.id)
    message = await chats.add_message(chat.id, user_id=owner.id, role="user", content="Hi")
    await analyses.save_finance(report.id, user_id=owner.id, working_capital_data={"days": 90})
    await analyses.save_logistics(report.id, user_id=owner.id, freight_estimate={"inr": 41000})
    ids = {"report": report.id, "cert": cert.id, "chat": chat.id, "message": message.id}
    return owner, ids


Call = Callable[[AsyncSession, Any, dict[str, Any]], Awaitable[Any]]
R, C, A = ReportRepository, ChatRepository, AnalysisRepository
RAISING: dict[str, Call] = {
    "reports.get": lambda s, u, i: R(s).get(i["report"], user_id=u),
    "reports.get_full": lambda s, u, i: R(s).get_full(i["report"], user_id=u),
    "reports.update": lambda s, u, i: R(s).update(i["report"], user_id=u, status="failed"),
    "reports.delete": lambda s, u, i: R(s).delete(i["report"], user_id=u),
    "reports.add_certification": lambda s, u, i: R(s).add_certification(
        i["report"],
        user_id=u,
        certification_id="CE",
        certification_name="CE marking",
        certification_type="conformity",
    ),
    "reports.update_certification": lambda s, u, i: R(s).update_certification(
        i["cert"], user_id=u, status="completed"
    ),
    "reports.get_certification": lambda s, u, i: R(s).get_certification(i["cert"], user_id=u),
    "reports.list_certifications": lambda s, u, i: R(s).list_certifications(i["report"], user_id=u),
    "reports.add_document": lambda s, u, i: R(s).add_document(
        i["report"], user_id=u, document_type="invoice", document_data={}
    ),
    "reports.list_documents": lambda s, u, i: R(s).list_documents(i["report"], user_id=u),
    "reports.save_action_plan": lambda s, u, i: R(s).save_action_plan(
        i["report"], user_id=u, tasks=[{"task_id": "iec", "day_number": 2, "task_title": "Hijack"}]
    ),
    "reports.complete_task": lambda s, u, i: R(s).complete_task(i["report"], "iec", user_id=u),
    "reports.get_action_plan": lambda s, u, i: R(s).get_action_plan(i["report"], user_id=u),
    "chat.create_session": lambda s, u, i: C(s).create_session(user_id=u, report_id=i["report"]),
    "chat.get_session": lambda s, u, i: C(s).get_session(i["chat"], user_id=u),
    "chat.add_message": lambda s, u, i: C(s).add_message(
        i["chat"], user_id=u, role="user", content="sneaky"
    ),
    "chat.add_messages": lambda s, u, i: C(s).add_messages(
        i["chat"], user_id=u, messages=[{"role": "user", "content": "sneaky"}]
    ),
    "chat.history": lambda s, u, i: C(s).history(i["chat"], user_id=u),
    "chat.history_before": lambda s, u, i: C(s).history(i["chat"], user_id=u, before=i["message"]),
    "chat.delete_session": lambda s, u, i: C(s).delete_session(i["chat"], user_id=u),
    "analyses.save_finance": lambda s, u, i: A(s).save_finance(
        i["report"], user_id=u, working_capital_data={"days": 1}
    ),
    "analyses.save_logistics": lambda s, u, i: A(s).save_logistics(i["report"], user_id=u),
    "analyses.get_finance": lambda s, u, i: A(s).get_finance(i["report"], user_id=u),
    "analyses.get_logistics": lambda s, u, i: A(s).get_logistics(i["report"], user_id=u),
}
EMPTY: dict[str, Call] = {
    "reports.get_or_none": lambda s, u, i: R(s).get_or_none(i["report"], user_id=u),
    "reports.list_for_user": lambda s, u, i: R(s).list_for_user(u),
    "chat.get_session_or_none": lambda s, u, i: C(s).get_session_or_none(i["chat"], user_id=u),
    "chat.list_sessions": lambda s, u, i: C(s).list_sessions(u),
    "analyses.get_finance_or_none": lambda s, u, i: A(s).get_finance_or_none(
        i["report"], user_id=u
    ),
    "analyses.get_logistics_or_none": lambda s, u, i: A(s).get_logistics_or_none(
        i["report"], user_id=u
    ),
    "analyses.get_metrics": lambda s, u, i: A(s).get_metrics(u),
}


@pytest.mark.parametrize("name", sorted(RAISING))
async def test_another_users_ids_are_not_found_and_change_nothing(
    db_session: AsyncSession, name: str
) -> None:
    _, ids = await owned_world(db_session)
    intruder = await make_user(db_session)
    before = await snapshot(db_session)
    with pytest.raises(NotFoundError):
        await RAISING[name](db_session, intruder.id, ids)
    assert await snapshot(db_session) == before


@pytest.mark.parametrize("name", sorted(EMPTY))
async def test_another_users_reads_find_nothing_of_the_owners(
    db_session: AsyncSession, name: str
) -> None:
    _, ids = await owned_world(db_session)
    intruder = await make_user(db_session)
    before = await snapshot(db_session)
    found = await EMPTY[name](db_session, intruder.id, ids)
    if name == "analyses.get_metrics":
        assert (found.reports_generated, found.documents_generated) == (0, 0)
    else:
        assert found in (None, []) or list(getattr(found, "items", [None])) == []
    assert await snapshot(db_session) == before


async def test_record_export_touches_only_the_acting_users_metrics(
    db_session: AsyncSession,
) -> None:
    owner, _ = await owned_world(db_session)
    intruder = await make_user(db_session)
    await AnalysisRepository(db_session).record_export(
        intruder.id, cost_savings=Decimal("10.00"), timeline_reduction_days=1
    )
    mine = await AnalysisRepository(db_session).get_metrics(owner.id)
    assert (mine.exports_completed, mine.reports_generated) == (0, 1)
