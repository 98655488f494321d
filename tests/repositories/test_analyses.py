"""AnalysisRepository against the real database: upserts per report, ownership, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import Report, User
from exportsathi_db.repositories import UserRepository
from exportsathi_db.repositories.analyses import AnalysisRepository
from exportsathi_db.views import FinanceAnalysisView, LogisticsAnalysisView, UserMetricsView
from tests.factories import make_report, make_user
from tests.statements import count_statements


async def rows(session: AsyncSession, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await session.execute(text(sql), params)]


async def owner_and_report(session: AsyncSession) -> tuple[User, Report]:
    user = await make_user(session)
    return user, await make_report(session, user)


FINANCE_SQL = (
    "SELECT user_id, working_capital_data, rodtep_benefit_data, jsonb_typeof(gst_refund_data)"
    " FROM finance_analysis WHERE report_id = :r"
)


async def test_save_finance_inserts_then_replaces_the_one_row(db_session: AsyncSession) -> None:
    user, report = await owner_and_report(db_session)
    repo = AnalysisRepository(db_session)
    async with count_statements(db_session) as seen:
        first = await repo.save_finance(
            report.id,
            user_id=user.id,
            working_capital_data={"days": 90},
            rodtep_benefit_data={"rate": "0.9%"},
        )
    assert len(seen) == 1 and isinstance(first, FinanceAnalysisView) and first.id.version == 7
    assert (first.user_id, first.report_id, first.working_capital_data) == (
        user.id,
        report.id,
        {"days": 90},
    )
    assert (first.rodtep_benefit_data, first.gst_refund_data) == ({"rate": "0.9%"}, None)
    assert await rows(db_session, FINANCE_SQL, r=report.id) == [
        (user.id, {"days": 90}, {"rate": "0.9%"}, None)  # SQL NULL, not JSON null
    ]
    await db_session.execute(
        text("UPDATE finance_analysis SET updated_at = now() - interval '1 day'")
    )
    async with count_statements(db_session) as seen:
        second = await repo.save_finance(
            report.id, user_id=user.id, working_capital_data={"days": 60}
        )
    assert len(seen) == 1
    assert second.id == first.id and second.working_capital_data == {"days": 60}
    assert second.rodtep_benefit_data is None  # a save replaces the whole analysis
    assert first.working_capital_data == {"days": 90}  # a snapshot: the earlier one is unchanged
    assert [(second.updated_at,)] == await rows(db_session, "SELECT now()")  # moved by trigger
    assert await rows(db_session, FINANCE_SQL, r=report.id) == [(user.id, {"days": 60}, None, None)]
    moved = await rows(db_session, "SELECT updated_at = now() FROM finance_analysis")
    assert moved == [(True,)]


async def test_save_logistics_with_nothing_yet_known_and_get_it_back(
    db_session: AsyncSession,
) -> None:
    user, report = await owner_and_report(db_session)
    repo = AnalysisRepository(db_session)
    assert await repo.get_logistics_or_none(report.id, user_id=user.id) is None
    with pytest.raises(NotFoundError):
        await repo.get_logistics(report.id, user_id=user.id)
    empty = await repo.save_logistics(report.id, user_id=user.id)
    assert isinstance(empty, LogisticsAnalysisView) and empty.lcl_fcl_comparison is None
    await repo.save_logistics(
        report.id, user_id=user.id, lcl_fcl_comparison={"choice": "LCL"}, freight_estimate={}
    )
    async with count_statements(db_session) as seen:
        found = await repo.get_logistics(report.id, user_id=user.id)
    assert len(seen) == 1
    assert (found.id, found.lcl_fcl_comparison, found.freight_estimate) == (
        empty.id,
        {"choice": "LCL"},
        {},
    )
    assert found.route_analysis is None
    stored = await rows(
        db_session,
        "SELECT count(*), min(lcl_fcl_comparison ->> 'choice') FROM logistics_analysis",
    )
    assert stored == [(1, "LCL")]


async def test_analyses_of_another_users_report_are_not_found_and_untouched(
    db_session: AsyncSession,
) -> None:
    user, report = await owner_and_report(db_session)
    stranger = await make_user(db_session)
    repo = AnalysisRepository(db_session)
    await repo.save_finance(report.id, user_id=user.id, working_capital_data={"days": 90})
    await repo.save_logistics(report.id, user_id=user.id, route_analysis={"port": "Nhava Sheva"})
    for report_id, user_id in [(report.id, stranger.id), (uuid.uuid4(), user.id)]:
        with pytest.raises(NotFoundError):
            await repo.save_finance(report_id, user_id=user_id, working_capital_data={"x": 1})
        with pytest.raises(NotFoundError):
            await repo.save_logistics(report_id, user_id=user_id, route_analysis={"x": 1})
        with pytest.raises(NotFoundError):
            await repo.get_finance(report_id, user_id=user_id)
        with pytest.raises(NotFoundError):
            await repo.get_logistics(report_id, user_id=user_id)
        assert await repo.get_finance_or_none(report_id, user_id=user_id) is None
    finance = await rows(db_session, "SELECT user_id, working_capital_data FROM finance_analysis")
    logistics = await rows(db_session, "SELECT user_id, route_analysis FROM logistics_analysis")
    assert finance == [(user.id, {"days": 90})]
    assert logistics == [(user.id, {"port": "Nhava Sheva"})]
    assert (await repo.get_finance(report.id, user_id=user.id)).working_capital_data == {"days": 90}


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("working_capital_data", {"working_capital_data": None}),
        ("working_capital_data", {"working_capital_data": [1, 2]}),
        ("gst_refund_data", {"gst_refund_data": "refund"}),
        ("financing_options", {"financing_options": {"rate": float("nan")}}),
        ("cash_flow_timeline", {"cash_flow_timeline": {"note": "nul\x00"}}),
        ("rodtep_benefit_data", {"rodtep_benefit_data": {"when": datetime.now(UTC)}}),
    ],
)
async def test_save_finance_bad_input_is_rejected_before_sql(
    db_session: AsyncSession, field: str, values: dict[str, Any]
) -> None:
    user, report = await owner_and_report(db_session)
    arguments: dict[str, Any] = {"working_capital_data": {"days": 90}} | values
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await AnalysisRepository(db_session).save_finance(
                report.id, user_id=user.id, **arguments
            )
    assert caught.value.field == field and seen == []
    assert await rows(db_session, "SELECT id FROM finance_analysis") == []


async def test_save_logistics_bad_input_is_rejected_before_sql(db_session: AsyncSession) -> None:
    user, report = await owner_and_report(db_session)
    repo = AnalysisRepository(db_session)
    for bad in ({"freight_estimate": ["USD", 1200]}, {"route_analysis": {"k": {1, 2}}}):
        async with count_statements(db_session) as seen:
            with pytest.raises(InvalidDataError) as caught:
                await repo.save_logistics(report.id, user_id=user.id, **bad)
        assert caught.value.field == next(iter(bad)) and seen == []
    assert await rows(db_session, "SELECT id FROM logistics_analysis") == []


async def test_concurrent_saves_of_one_report_leave_one_row_from_one_writer(
    db: DatabaseConnection,
) -> None:
    async with db.session_scope() as session:
        user, report = await owner_and_report(session)
    start = asyncio.Event()

    async def save(writer: int) -> None:
        await start.wait()
        async with db.session_scope() as session:
            await AnalysisRepository(session).save_finance(
                report.id,
                user_id=user.id,
                working_capital_data={"writer": writer},
                gst_refund_data={"writer": writer},
            )
            await asyncio.sleep(0.01)  # hold the row lock: the other writers must queue on it

    try:
        tasks = [asyncio.create_task(save(writer)) for writer in range(10)]
        start.set()
        await asyncio.gather(*tasks)  # never an error: ON CONFLICT serialises the writers
        async with db.session_scope() as session:
            stored = await rows(
                session,
                "SELECT working_capital_data, gst_refund_data FROM finance_analysis"
                " WHERE report_id = :r",
                r=report.id,
            )
        assert len(stored) == 1
        working_capital, gst_refund = stored[0]
        assert working_capital == gst_refund and working_capital["writer"] in range(10)
    finally:
        async with db.session_scope() as session:
            await UserRepository(session).delete(user.id)


async def test_get_metrics_zeros_before_the_first_event_then_the_row(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    repo = AnalysisRepository(db_session)
    async with count_statements(db_session) as seen:
        zeros = await repo.get_metrics(user.id)
    assert len(seen) == 1
    assert zeros == UserMetricsView(user.id, 0, 0, 0, 0, Decimal("0.00"), 0, None)
    assert str(zeros.cost_savings) == "0.00"  # as a stored zero of numeric(12, 2) reads
    assert await rows(db_session, "SELECT id FROM user_metrics") == []  # never written
    recorded = await repo.record_export(
        user.id, cost_savings=Decimal("1500.50"), timeline_reduction_days=3
    )
    async with count_statements(db_session) as seen:
        metrics = await repo.get_metrics(user.id)
    assert len(seen) == 1 and metrics == recorded
    assert (metrics.exports_completed, metrics.cost_savings) == (1, Decimal("1500.50"))
    with pytest.raises(NotFoundError):
        await repo.get_metrics(uuid.uuid4())


METRICS_SQL = (
    "SELECT exports_completed, cost_savings, timeline_reduction_days, last_export_date"
    " FROM user_metrics WHERE user_id = :u"
)


async def test_record_export_adds_up_atomically(db_session: AsyncSession) -> None:
    user, other = await make_user(db_session), await make_user(db_session)
    repo = AnalysisRepository(db_session)
    later = datetime(2030, 5, 1, 12, tzinfo=UTC)
    async with count_statements(db_session) as seen:
        first = await repo.record_export(
            user.id, cost_savings=Decimal("1200.25"), timeline_reduction_days=5, exported_at=later
        )
    assert len(seen) == 1 and isinstance(first, UserMetricsView)
    assert (first.user_id, first.exports_completed, first.cost_savings) == (
        user.id,
        1,
        Decimal("1200.25"),
    )
    second = await repo.record_export(user.id, cost_savings=300, timeline_reduction_days=0)
    assert (second.exports_completed, second.cost_savings) == (2, Decimal("1500.25"))
    assert first.exports_completed == 1  # a snapshot: the earlier one is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        second.exports_completed = 0  # type: ignore[misc]
    assert second.last_export_date == later  # greatest(existing, now())
    await repo.record_export(
        user.id,
        cost_savings=Decimal(0),
        timeline_reduction_days=2,
        exported_at=later + timedelta(days=1),
    )
    assert await rows(db_session, METRICS_SQL, u=user.id) == [
        (3, Decimal("1500.25"), 7, later + timedelta(days=1))
    ]
    assert await rows(db_session, METRICS_SQL, u=other.id) == []


async def test_record_export_keeps_the_other_counters(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    await db_session.execute(
        text("INSERT INTO user_metrics (user_id, reports_generated) VALUES (:u, 4)"),
        {"u": user.id},
    )
    metrics = await AnalysisRepository(db_session).record_export(
        user.id, cost_savings=Decimal("10.00"), timeline_reduction_days=1
    )
    now = (await rows(db_session, "SELECT now()"))[0][0]
    assert (metrics.reports_generated, metrics.exports_completed) == (4, 1)
    assert await rows(db_session, METRICS_SQL, u=user.id) == [(1, Decimal("10.00"), 1, now)]


async def test_concurrent_exports_all_count(db: DatabaseConnection) -> None:
    async with db.session_scope() as session:
        user = await make_user(session)

    async def export(n: int) -> None:
        async with db.session_scope() as session:
            await AnalysisRepository(session).record_export(
                user.id, cost_savings=Decimal("10.50"), timeline_reduction_days=n
            )

    try:
        await asyncio.gather(*(export(n) for n in range(10)))
        async with db.session_scope() as session:
            stored = await rows(session, METRICS_SQL, u=user.id)
        assert [row[:3] for row in stored] == [(10, Decimal("105.00"), 45)]  # no lost update
    finally:
        async with db.session_scope() as session:
            await UserRepository(session).delete(user.id)


async def test_record_export_for_a_missing_user_keeps_the_transaction_usable(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    repo = AnalysisRepository(db_session)
    with pytest.raises(NotFoundError):
        await repo.record_export(uuid.uuid4(), cost_savings=Decimal(1), timeline_reduction_days=1)
    assert await rows(db_session, "SELECT id FROM user_metrics") == []
    await repo.record_export(user.id, cost_savings=Decimal(1), timeline_reduction_days=1)
    assert len(await rows(db_session, "SELECT id FROM user_metrics")) == 1


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("cost_savings", {"cost_savings": Decimal("-0.01")}),
        ("cost_savings", {"cost_savings": 12.5}),
        ("cost_savings", {"cost_savings": Decimal("NaN")}),
        ("cost_savings", {"cost_savings": Decimal("Infinity")}),
        ("cost_savings", {"cost_savings": Decimal("1.005")}),
        ("cost_savings", {"cost_savings": Decimal("10000000000")}),
        ("cost_savings", {"cost_savings": Decimal("1e30")}),
        ("cost_savings", {"cost_savings": 10**40}),
        ("cost_savings", {"cost_savings": True}),
        ("cost_savings", {"cost_savings": None}),
        ("timeline_reduction_days", {"timeline_reduction_days": -1}),
        ("timeline_reduction_days", {"timeline_reduction_days": 1.5}),
        ("timeline_reduction_days", {"timeline_reduction_days": None}),
        ("exported_at", {"exported_at": datetime(2030, 1, 1)}),  # naive
        ("exported_at", {"exported_at": "2030-01-01"}),
    ],
)
async def test_record_export_bad_input_is_rejected_before_sql(
    db_session: AsyncSession, field: str, values: dict[str, Any]
) -> None:
    user = await make_user(db_session)
    arguments: dict[str, Any] = {"cost_savings": Decimal(1), "timeline_reduction_days": 1} | values
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await AnalysisRepository(db_session).record_export(user.id, **arguments)
    assert caught.value.field == field and seen == []
    assert await rows(db_session, "SELECT id FROM user_metrics") == []


async def test_analyses_are_frozen_read_models_and_nothing_enters_the_identity_map(
    db_session: AsyncSession,
) -> None:
    user, report = await owner_and_report(db_session)
    repo = AnalysisRepository(db_session)
    saved = await repo.save_finance(
        report.id, user_id=user.id, working_capital_data={"days": 90}, financing_options={}
    )
    assert await repo.get_finance(report.id, user_id=user.id) == saved
    logistics = await repo.save_logistics(report.id, user_id=user.id, route_analysis={"p": "x"})
    assert await repo.get_logistics_or_none(report.id, user_id=user.id) == logistics
    await repo.record_export(user.id, cost_savings=1, timeline_reduction_days=1)
    await repo.get_metrics(user.id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        saved.financing_options = None  # type: ignore[misc]
    for view in (FinanceAnalysisView, LogisticsAnalysisView):
        names = [f.name for f in dataclasses.fields(view)]
        assert names[:3] == ["id", "user_id", "report_id"]
        assert names[-2:] == ["created_at", "updated_at"]
    assert set(db_session.identity_map.values()) == {user, report}  # nothing of the repository's


AnalysisCall = Callable[[AnalysisRepository, Any, dict[str, Any]], Awaitable[Any]]
# (method, the id argument given the bad value) -> the call; `i` holds good ids.
CALLS_WITH_A_BAD_ID: dict[tuple[str, str], AnalysisCall] = {
    ("save_finance", "report_id"): lambda a, bad, i: a.save_finance(
        bad, user_id=i["user"], working_capital_data={}
    ),
    ("save_finance", "user_id"): lambda a, bad, i: a.save_finance(
        i["report"], user_id=bad, working_capital_data={}
    ),
    ("save_logistics", "report_id"): lambda a, bad, i: a.save_logistics(bad, user_id=i["user"]),
    ("save_logistics", "user_id"): lambda a, bad, i: a.save_logistics(i["report"], user_id=bad),
    ("get_finance", "report_id"): lambda a, bad, i: a.get_finance(bad, user_id=i["user"]),
    ("get_finance_or_none", "user_id"): lambda a, bad, i: a.get_finance_or_none(
        i["report"], user_id=bad
    ),
    ("get_logistics", "user_id"): lambda a, bad, i: a.get_logistics(i["report"], user_id=bad),
    ("get_logistics_or_none", "report_id"): lambda a, bad, i: a.get_logistics_or_none(
        bad, user_id=i["user"]
    ),
    ("get_metrics", "user_id"): lambda a, bad, i: a.get_metrics(bad),
    ("record_export", "user_id"): lambda a, bad, i: a.record_export(
        bad, cost_savings=1, timeline_reduction_days=1
    ),
}


@pytest.mark.parametrize("bad", ["", "abc", 5, {}, None], ids=repr)
@pytest.mark.parametrize("call", sorted(CALLS_WITH_A_BAD_ID), ids="{0[0]}.{0[1]}".format)
async def test_an_id_that_is_not_a_uuid_is_invalid_data_and_no_sql_is_sent(
    db_session: AsyncSession, call: tuple[str, str], bad: Any
) -> None:
    user, report = await owner_and_report(db_session)
    ids = {"user": user.id, "report": report.id}
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await CALLS_WITH_A_BAD_ID[call](AnalysisRepository(db_session), bad, ids)
    assert caught.value.field == call[1] and seen == []
