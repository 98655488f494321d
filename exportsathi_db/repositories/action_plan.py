"""A report's 7-day action plan: saved whole in one round trip, read grouped by day."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text, bindparam, case, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.sql.dml import ReturningUpdate

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import ActionPlanProgress, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.repositories.base import Repository, translate_errors
from exportsathi_db.repositories.report_common import OWNED_REPORT, owner

Task = ActionPlanProgress
REQUIRED = ("task_id", "day_number", "task_title")
OPTIONAL = ("task_description", "task_category", "completed")
_COLUMNS = ", ".join(Task.__table__.columns.keys())

# One row per task from parallel arrays, joined with the report only if the user owns it.
# Re-saving a task replaces its definition; its progress changes only when `completed` is
# given (NULL in the array = not given: new tasks start open, existing ones keep theirs);
# a re-saved task finds its own flag with array_position, a linear scan fine at plan sizes.
_UPSERT = text(
    f"""
    INSERT INTO action_plan_progress AS p (id, user_id, report_id, task_id, day_number,
        task_title, task_description, task_category, completed, completed_at)
    SELECT t.id, r.user_id, r.id, t.task_id, t.day_number, t.task_title, t.task_description,
        t.task_category, coalesce(t.completed, false), CASE WHEN t.completed THEN now() END
    FROM reports r CROSS JOIN unnest(:ids, :task_ids, :day_numbers, :titles, :descriptions,
        :categories, :completed) AS t(id, task_id, day_number, task_title, task_description,
        task_category, completed)
    WHERE r.id = :scope_report_id AND r.user_id = :scope_user_id
    ON CONFLICT (report_id, task_id) DO UPDATE SET
        day_number = EXCLUDED.day_number,
        task_title = EXCLUDED.task_title,
        task_description = EXCLUDED.task_description,
        task_category = EXCLUDED.task_category,
        completed = coalesce(
            (:completed)[array_position(:task_ids, EXCLUDED.task_id)], p.completed),
        completed_at = CASE (:completed)[array_position(:task_ids, EXCLUDED.task_id)]
            WHEN true THEN CASE WHEN p.completed THEN p.completed_at ELSE now() END
            WHEN false THEN NULL
            ELSE p.completed_at END
    RETURNING {_COLUMNS}
    """
).bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("task_ids", type_=ARRAY(String)),
    bindparam("day_numbers", type_=ARRAY(Integer)),
    bindparam("titles", type_=ARRAY(String)),
    bindparam("descriptions", type_=ARRAY(Text)),
    bindparam("categories", type_=ARRAY(String)),
    bindparam("completed", type_=ARRAY(Boolean)),
    bindparam("scope_report_id", type_=UUID(as_uuid=True)),
    bindparam("scope_user_id", type_=UUID(as_uuid=True)),
)

_SAVE = (
    select(Task)
    .from_statement(_UPSERT.columns(*Task.__table__.columns))
    .execution_options(populate_existing=True)
)


def _set_completed(completed: bool) -> ReturningUpdate[ActionPlanProgress]:
    """Done stamps completed_at once (a repeat keeps the first time); not done clears it."""
    stamp = case((Task.completed, Task.completed_at), else_=func.now()) if completed else None
    return (
        update(Task)
        .where(
            Task.report_id == bindparam("scope_report_id"),
            Task.task_id == bindparam("scope_task_id"),
            Task.user_id == bindparam("scope_user_id"),
        )
        .values(completed=completed, completed_at=stamp)
        .returning(Task)
        .execution_options(populate_existing=True, synchronize_session=False)
    )


_COMPLETE, _REOPEN = _set_completed(True), _set_completed(False)

# The owned report left-joined to its tasks: no row = not the user's; one NULL task = no plan.
_OWNED = OWNED_REPORT.subquery()
_PLAN = (
    select(_OWNED.c.id, Task)
    .select_from(_OWNED)
    .outerjoin(Task, Task.report_id == _OWNED.c.id)
    .order_by(Task.day_number, Task.id)
    .execution_options(populate_existing=True)
)


@dataclass(frozen=True)
class PlanDay:
    """One day of the plan: its tasks in order, and how many of them are done."""

    day_number: int
    tasks: tuple[ActionPlanProgress, ...]
    completed: int
    total: int


@dataclass(frozen=True)
class ActionPlan:
    """A report's plan by day (only days that have tasks); empty when nothing is planned."""

    report_id: uuid.UUID
    days: tuple[PlanDay, ...]
    completed: int
    total: int


def _checked_tasks(tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every task checked before any SQL; errors name the task and the field."""
    if isinstance(tasks, (str, bytes, Mapping)) or not isinstance(tasks, Sequence):
        raise InvalidDataError("tasks", "must be a sequence of task mappings")
    result: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        where = f"tasks[{index}]"
        if not isinstance(task, Mapping):
            raise InvalidDataError(where, f"must be a mapping; got {type(task).__name__}")
        unknown = sorted(task.keys() - {*REQUIRED, *OPTIONAL})
        if unknown:
            raise InvalidDataError(f"{where}.{unknown[0]}", "is not a task field")
        for key in REQUIRED:
            if task.get(key) is None:
                raise InvalidDataError(f"{where}.{key}", "is required")
        values = {key: task.get(key) for key in (*REQUIRED, *OPTIONAL)}
        try:
            validated(Task, {key: value for key, value in values.items() if value is not None})
        except InvalidDataError as exc:
            message = str(exc).removeprefix(f"{exc.field}: ")
            raise InvalidDataError(
                f"{where}.{exc.field}", f"(task_id {task['task_id']!r}) {message}"
            ) from None
        task_id = str(values["task_id"])
        if task_id in seen:
            first = f"tasks[{seen[task_id]}]"
            raise InvalidDataError(f"{where}.task_id", f"{task_id!r} is already {first}")
        seen[task_id] = index
        result.append(values)
    return result


class ActionPlanMethods(Repository):
    """ReportRepository's action-plan methods (one base class per file keeps files small)."""

    @translate_errors
    async def save_action_plan(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID, tasks: Sequence[Mapping[str, Any]]
    ) -> list[ActionPlanProgress]:
        """Insert or update the tasks by task_id, whatever their number, in one statement.

        Tasks not given are kept. Returns the saved tasks in the order given.
        """
        scope = owner(report_id, user_id)
        rows = _checked_tasks(tasks)
        if not rows:
            if (await self.session.execute(OWNED_REPORT, scope)).first() is None:
                raise NotFoundError(f"report {report_id} not found")
            return []
        params = scope | {
            "ids": [new_id() for _ in rows],
            "task_ids": [row["task_id"] for row in rows],
            "day_numbers": [row["day_number"] for row in rows],
            "titles": [row["task_title"] for row in rows],
            "descriptions": [row["task_description"] for row in rows],
            "categories": [row["task_category"] for row in rows],
            "completed": [row["completed"] for row in rows],
        }
        saved = {task.task_id: task for task in await self.session.scalars(_SAVE, params)}
        if not saved:
            raise NotFoundError(f"report {report_id} not found")
        return [saved[row["task_id"]] for row in rows]

    @translate_errors
    async def complete_task(
        self, report_id: uuid.UUID, task_id: str, *, user_id: uuid.UUID, completed: bool = True
    ) -> ActionPlanProgress:
        """Mark a task done (stamping `completed_at` once) or not done (clearing it)."""
        params = owner(report_id, user_id) | {"scope_task_id": task_id}
        validated(Task, {"task_id": task_id, "completed": completed})
        statement = _COMPLETE if completed else _REOPEN
        task = (await self.session.scalars(statement, params)).one_or_none()
        if task is None:
            raise NotFoundError(f"task {task_id!r} of report {report_id} not found")
        return task

    @translate_errors
    async def get_action_plan(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> ActionPlan:
        """The plan grouped by day with each day's progress (1 statement)."""
        rows = (await self.session.execute(_PLAN, owner(report_id, user_id))).all()
        if not rows:
            raise NotFoundError(f"report {report_id} not found")
        planned = [task for _, task in rows if task is not None]
        days = tuple(
            PlanDay(day, tuple(group), sum(t.completed for t in group), len(group))
            for day, group in ((d, list(g)) for d, g in groupby(planned, lambda t: t.day_number))
        )
        done = sum(day.completed for day in days)
        return ActionPlan(report_id, days, done, len(planned))
