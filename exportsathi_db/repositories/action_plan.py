"""A report's 7-day action plan: a collaborator of ReportRepository (which exposes it as
`save_action_plan`, `complete_task` and `get_action_plan`). Saved whole in one statement,
read grouped by day."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import ActionPlanProgress, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.repositories import executor
from exportsathi_db.repositories.base import Repository
from exportsathi_db.repositories.report_common import OWNED_REPORT, owned, report_missing
from exportsathi_db.views.base import column_list
from exportsathi_db.views.reports import ActionPlan, PlanDay, PlanTaskView

REQUIRED = ("task_id", "day_number", "task_title")
OPTIONAL = ("task_description", "task_category", "completed")
_TASK = column_list(PlanTaskView)

# $1 the report, $2 the user, $3… one array per task field (one element per task): one row
# per task, joined with the report only if the user owns it. Re-saving a task replaces its
# definition; its progress changes only when `completed` is given (NULL in the array = not
# given: new tasks start open, existing ones keep theirs); a re-saved task finds its own flag
# with array_position, a linear scan fine at plan sizes.
SAVE = f"""INSERT INTO action_plan_progress AS p (id, user_id, report_id, task_id, day_number,
    task_title, task_description, task_category, completed, completed_at)
SELECT t.id, r.user_id, r.id, t.task_id, t.day_number, t.task_title, t.task_description,
    t.task_category, coalesce(t.completed, false), CASE WHEN t.completed THEN now() END
FROM reports r CROSS JOIN unnest($3::uuid[], $4::text[], $5::integer[], $6::text[],
    $7::text[], $8::text[], $9::boolean[]) AS t(id, task_id, day_number, task_title,
    task_description, task_category, completed)
WHERE r.id = $1 AND r.user_id = $2
ON CONFLICT (report_id, task_id) DO UPDATE SET
    day_number = EXCLUDED.day_number,
    task_title = EXCLUDED.task_title,
    task_description = EXCLUDED.task_description,
    task_category = EXCLUDED.task_category,
    completed = coalesce(($9::boolean[])[array_position($4::text[], EXCLUDED.task_id)],
        p.completed),
    completed_at = CASE ($9::boolean[])[array_position($4::text[], EXCLUDED.task_id)]
        WHEN true THEN CASE WHEN p.completed THEN p.completed_at ELSE now() END
        WHEN false THEN NULL
        ELSE p.completed_at END
RETURNING {_TASK}"""
# $1 the report, $2 the user, $3 the task, $4 done or not: done stamps completed_at once (a
# repeat keeps the first time); not done clears it.
COMPLETE_TASK = f"""UPDATE action_plan_progress SET completed = $4::boolean,
    completed_at = CASE WHEN NOT $4::boolean THEN NULL WHEN completed THEN completed_at
        ELSE now() END
WHERE report_id = $1 AND user_id = $2 AND task_id = $3
RETURNING {_TASK}"""
# The report's tasks by day: no row = not the user's report; one all-NULL row = no plan.
PLAN = f"""SELECT {column_list(PlanTaskView, "t")}
FROM reports r LEFT JOIN action_plan_progress t ON t.report_id = r.id
WHERE r.id = $1 AND r.user_id = $2 ORDER BY t.day_number, t.id"""


def checked_tasks(tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
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
            validated(
                ActionPlanProgress,
                {key: value for key, value in values.items() if value is not None},
            )
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


def by_day(report_id: uuid.UUID, tasks: list[PlanTaskView]) -> ActionPlan:
    """`tasks`, ordered by day, as the plan's days with their progress."""
    days: list[PlanDay] = []
    for day_number, group in groupby(tasks, lambda task: task.day_number):
        planned = tuple(group)
        done = sum(task.completed for task in planned)
        days.append(PlanDay(day_number, planned, done, len(planned)))
    return ActionPlan(report_id, tuple(days), sum(day.completed for day in days), len(tasks))


class ActionPlans(Repository):
    """A report's action plan, scoped to the acting user."""

    async def save(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID, tasks: Sequence[Mapping[str, Any]]
    ) -> list[PlanTaskView]:
        """Insert or update the tasks by task_id, whatever their number, in one statement.

        Tasks not given are kept. Returns the saved tasks in the order given.
        """
        scope = owned(report_id, user_id)
        rows = checked_tasks(tasks)
        if not rows:
            if await executor.fetchrow(self.session, OWNED_REPORT, *scope) is None:
                raise report_missing(report_id)
            return []
        columns = (
            [new_id() for _ in rows],
            *([row[name] for row in rows] for name in (*REQUIRED, *OPTIONAL)),
        )
        found = await executor.fetch(self.session, SAVE, *scope, *columns)
        saved = {task.task_id: task for task in (PlanTaskView(*row) for row in found)}
        if not saved:
            raise report_missing(report_id)
        return [saved[row["task_id"]] for row in rows]

    async def complete_task(
        self, report_id: uuid.UUID, task_id: str, *, user_id: uuid.UUID, completed: bool = True
    ) -> PlanTaskView:
        """Mark a task done (stamping `completed_at` once) or not done (clearing it)."""
        scope = owned(report_id, user_id)
        validated(ActionPlanProgress, {"task_id": task_id, "completed": completed})
        row = await executor.fetchrow(self.session, COMPLETE_TASK, *scope, task_id, completed)
        if row is None:
            raise NotFoundError(f"task {task_id!r} of report {report_id} not found")
        return PlanTaskView(*row)

    async def get(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> ActionPlan:
        """The plan grouped by day with each day's progress (1 statement)."""
        scope = owned(report_id, user_id)
        rows = await executor.fetch(self.session, PLAN, *scope)
        if not rows:
            raise report_missing(report_id)
        return by_day(scope[0], [PlanTaskView(*row) for row in rows if row[0] is not None])
