"""The 7-day action plan: saved whole in one statement, tasks completed, read by day."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import Report
from exportsathi_db.repositories import ActionPlan, PlanDay
from exportsathi_db.repositories.reports import ReportRepository
from exportsathi_db.views import PlanTaskView
from tests.factories import make_report, make_user
from tests.statements import count_statements

LONG_AGO = datetime(2024, 4, 1, 9, 30, tzinfo=UTC)


def _plan(size: int) -> list[dict[str, Any]]:
    return [
        {
            "task_id": f"task-{i}",
            "day_number": i % 7 + 1,
            "task_title": f"Step {i}",
            "task_description": f"Do step {i}",
            "task_category": "documentation",
        }
        for i in range(size)
    ]


async def _stored(session: AsyncSession, report: Report) -> dict[str, tuple[Any, ...]]:
    """task_id -> (day, title, description, category, completed, completed_at) as stored."""
    rows = await session.execute(
        text(
            "SELECT task_id, day_number, task_title, task_description, task_category, completed,"
            " completed_at, user_id FROM action_plan_progress WHERE report_id = :r"
        ),
        {"r": report.id},
    )
    stored = {r[0]: tuple(r[1:]) for r in rows}
    assert all(values[-1] == report.user_id for values in stored.values())
    return {task_id: values[:-1] for task_id, values in stored.items()}


@pytest.mark.parametrize("size", [1, 21])
async def test_save_action_plan_is_one_statement_whatever_its_size(
    db_session: AsyncSession, size: int
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    tasks = _plan(size)
    async with count_statements(db_session) as seen:
        saved = await ReportRepository(db_session).save_action_plan(
            report.id, user_id=user.id, tasks=tasks
        )
    assert len(seen) == 1
    assert [task.task_id for task in saved] == [task["task_id"] for task in tasks]
    assert await _stored(db_session, report) == {
        t["task_id"]: (
            t["day_number"],
            t["task_title"],
            t["task_description"],
            "documentation",
            False,
            None,
        )
        for t in tasks
    }


async def test_saving_again_updates_by_task_id_and_keeps_progress_unless_given(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    first = [
        {"task_id": "iec", "day_number": 1, "task_title": "Apply for IEC", "completed": True},
        {"task_id": "gst", "day_number": 1, "task_title": "GST LUT", "completed": True},
        {"task_id": "fda", "day_number": 2, "task_title": "FDA registration"},
        {"task_id": "rcmc", "day_number": 3, "task_title": "RCMC", "completed": True},
    ]
    await repo.save_action_plan(report.id, user_id=user.id, tasks=first)
    await db_session.execute(
        text("UPDATE action_plan_progress SET completed_at = :t WHERE completed"), {"t": LONG_AGO}
    )
    again = [
        {"task_id": "iec", "day_number": 2, "task_title": "IEC (DGFT portal)"},  # keeps progress
        {"task_id": "gst", "day_number": 1, "task_title": "GST LUT", "completed": False},
        {"task_id": "fda", "day_number": 2, "task_title": "FDA", "completed": True},
        {"task_id": "rcmc", "day_number": 3, "task_title": "RCMC", "completed": True},
        {"task_id": "new", "day_number": 7, "task_title": "Book freight", "task_category": "x"},
    ]
    async with count_statements(db_session) as seen:
        saved = await repo.save_action_plan(report.id, user_id=user.id, tasks=again)
    assert len(seen) == 1 and [t.task_id for t in saved] == ["iec", "gst", "fda", "rcmc", "new"]
    now = (await db_session.execute(text("SELECT now()"))).scalar_one()
    assert await _stored(db_session, report) == {
        "iec": (2, "IEC (DGFT portal)", None, None, True, LONG_AGO),
        "gst": (1, "GST LUT", None, None, False, None),
        "fda": (2, "FDA", None, None, True, now),
        "rcmc": (3, "RCMC", None, None, True, LONG_AGO),
        "new": (7, "Book freight", None, "x", False, None),
    }
    assert (saved[0].day_number, saved[0].completed, saved[0].completed_at) == (2, True, LONG_AGO)


@pytest.mark.parametrize(
    ("tasks", "field", "words"),
    [
        (
            [
                {"task_id": "a", "day_number": 1, "task_title": "A"},
                {"task_id": "b", "day_number": 8, "task_title": "B"},
            ],
            "tasks[1].day_number",
            "'b'",
        ),
        ([{"task_id": "a", "day_number": 0, "task_title": "A"}], "tasks[0].day_number", "'a'"),
        ([{"task_id": "a", "day_number": "1", "task_title": "A"}], "tasks[0].day_number", "'a'"),
        ([{"task_id": "a", "day_number": 1}], "tasks[0].task_title", "required"),
        ([{"day_number": 1, "task_title": "A"}], "tasks[0].task_id", "required"),
        ([{"task_id": "a", "day_number": 1, "task_title": "A", "done": True}], "tasks[0].done", ""),
        (
            [{"task_id": "a", "day_number": 1, "task_title": "A", "completed": "yes"}],
            "tasks[0].completed",
            "'a'",
        ),
        (
            [{"task_id": "a", "day_number": 1, "task_title": "t" * 256}],
            "tasks[0].task_title",
            "'a'",
        ),
        (
            [*_plan(3), {"task_id": "task-1", "day_number": 5, "task_title": "Twin"}],
            "tasks[3].task_id",
            "tasks[1]",
        ),
        ([("task_id", "a")], "tasks[0]", "mapping"),
        ({"task_id": "a", "day_number": 1, "task_title": "A"}, "tasks", "sequence"),
    ],
)
async def test_save_action_plan_checks_every_task_before_any_sql(
    db_session: AsyncSession, tasks: Any, field: str, words: str
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await ReportRepository(db_session).save_action_plan(
                report.id, user_id=user.id, tasks=tasks
            )
    assert caught.value.field == field and words in str(caught.value)
    assert seen == []
    assert await _stored(db_session, report) == {}


async def test_saving_to_another_users_report_is_not_found_and_writes_nothing(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ReportRepository(db_session)
    await repo.save_action_plan(report.id, user_id=owner.id, tasks=_plan(2))
    before = await _stored(db_session, report)
    changed = [{"task_id": "task-0", "day_number": 7, "task_title": "Hijacked"}]
    for tasks in (changed, []):
        async with count_statements(db_session) as seen:
            with pytest.raises(NotFoundError):
                await repo.save_action_plan(report.id, user_id=other.id, tasks=tasks)
        assert len(seen) == 1
    with pytest.raises(NotFoundError):
        await repo.save_action_plan(uuid.uuid4(), user_id=owner.id, tasks=changed)
    assert await _stored(db_session, report) == before


async def test_saving_an_empty_plan_changes_nothing(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    await repo.save_action_plan(report.id, user_id=user.id, tasks=_plan(3))
    before = await _stored(db_session, report)
    assert await repo.save_action_plan(report.id, user_id=user.id, tasks=[]) == []
    assert await _stored(db_session, report) == before


async def test_complete_task_stamps_once_and_uncompleting_clears(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    await repo.save_action_plan(report.id, user_id=user.id, tasks=_plan(2))
    now = (await db_session.execute(text("SELECT now()"))).scalar_one()
    async with count_statements(db_session) as seen:
        task = await repo.complete_task(report.id, "task-0", user_id=user.id)
    assert len(seen) == 1 and (task.completed, task.completed_at) == (True, now)
    await db_session.execute(
        text("UPDATE action_plan_progress SET completed_at = :t WHERE completed"), {"t": LONG_AGO}
    )
    await repo.complete_task(report.id, "task-0", user_id=user.id)  # already done: date kept
    assert (await _stored(db_session, report))["task-0"][4:] == (True, LONG_AGO)
    task = await repo.complete_task(report.id, "task-0", user_id=user.id, completed=False)
    assert (task.completed, task.completed_at) == (False, None)
    stored = await _stored(db_session, report)
    assert stored["task-0"][4:] == (False, None) and stored["task-1"][4:] == (False, None)


async def test_complete_task_of_another_user_or_a_missing_task_is_not_found(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ReportRepository(db_session)
    await repo.save_action_plan(report.id, user_id=owner.id, tasks=_plan(1))
    with pytest.raises(NotFoundError):
        await repo.complete_task(report.id, "task-0", user_id=other.id)
    with pytest.raises(NotFoundError):
        await repo.complete_task(report.id, "nope", user_id=owner.id)
    with pytest.raises(NotFoundError):
        await repo.complete_task(uuid.uuid4(), "task-0", user_id=owner.id)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError):
            await repo.complete_task(report.id, "task-0", user_id=owner.id, completed=None)  # type: ignore[arg-type]
    assert seen == []
    assert (await _stored(db_session, report))["task-0"][4:] == (False, None)


async def test_get_action_plan_groups_by_day_with_progress(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    await repo.save_action_plan(report.id, user_id=user.id, tasks=_plan(10))
    for task_id in ("task-0", "task-7", "task-3"):
        await repo.complete_task(report.id, task_id, user_id=user.id)
    async with count_statements(db_session) as seen:
        plan = await repo.get_action_plan(report.id, user_id=user.id)
    assert len(seen) == 1
    assert (plan.report_id, plan.completed, plan.total) == (report.id, 3, 10)
    assert [(d.day_number, d.completed, d.total) for d in plan.days] == [
        (1, 2, 2),
        (2, 0, 2),
        (3, 0, 2),
        (4, 1, 1),
        (5, 0, 1),
        (6, 0, 1),
        (7, 0, 1),
    ]
    assert [t.task_id for t in plan.days[0].tasks] == ["task-0", "task-7"]  # order saved
    assert isinstance(plan.days[0], PlanDay) and isinstance(plan.days[0].tasks[0], PlanTaskView)
    with pytest.raises(AttributeError):
        plan.total = 0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        plan.days[0].tasks[0].completed = False  # type: ignore[misc]


async def test_get_action_plan_of_a_plain_report_is_empty_and_of_another_user_not_found(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ReportRepository(db_session)
    assert await repo.get_action_plan(report.id, user_id=owner.id) == ActionPlan(
        report.id, (), 0, 0
    )
    await repo.save_action_plan(report.id, user_id=owner.id, tasks=_plan(2))
    with pytest.raises(NotFoundError):
        await repo.get_action_plan(report.id, user_id=other.id)
    with pytest.raises(NotFoundError):
        await repo.get_action_plan(uuid.uuid4(), user_id=owner.id)
