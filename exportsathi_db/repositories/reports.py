"""ReportRepository: export-readiness reports, and through them certifications, documents
and the 7-day action plan (collaborators in report_children.py and action_plan.py)."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import NotFoundError
from exportsathi_db.models import Report, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.repositories import executor, metrics
from exportsathi_db.repositories.action_plan import ActionPlans
from exportsathi_db.repositories.base import (
    Page,
    Repository,
    check_id,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from exportsathi_db.repositories.report_children import NOT_STARTED, Certifications, Documents
from exportsathi_db.repositories.report_common import (
    UNSET,
    Unset,
    check_fields,
    json_param,
    owned,
    report_missing,
)
from exportsathi_db.views.base import column_list
from exportsathi_db.views.reports import (
    ActionPlan,
    CertificationView,
    DocumentView,
    FullReportView,
    PlanDay,
    PlanTaskView,
    ReportView,
)

__all__ = ["UNSET", "ActionPlan", "PlanDay", "ReportRepository"]

# The columns a report is created and updated with (all but its id, owner and timestamps),
# each with the type its parameter is cast to in the INSERT's SELECT list, where a bare
# parameter has no type; the column's own length and precision are checked on assignment.
SETTABLE = {
    "product_name": "text",
    "product_image_url": "text",
    "ingredients": "text",
    "bom": "text",
    "destination_country": "text",
    "business_type": "text",
    "company_size": "text",
    "monthly_volume": "integer",
    "price_range": "text",
    "payment_mode": "text",
    "hs_code": "text",
    "hs_code_confidence": "numeric",
    "risk_score": "integer",
    "estimated_cost": "numeric",
    "estimated_timeline_days": "integer",
    "report_data": "jsonb",
    "status": "text",
}
UPDATABLE = frozenset(SETTABLE)
# Profile fields a new report copies from its user unless the caller gives them.
FROM_USER = ("business_type", "company_size", "monthly_volume")

_REPORT = column_list(ReportView)
_GIVEN = (  # $4… the settable columns' values; the profile's fall back to the user's
    f"coalesce(${n}::{cast}, u.{name})" if name in FROM_USER else f"${n}::{cast}"
    for n, (name, cast) in enumerate(SETTABLE.items(), start=4)
)
# $1 a new id, $2 the user, $3 a new metrics row id. The report and the owner's
# reports_generated count in one statement; the user's profile is read by the INSERT
# itself: no user, no row, no count (and no error). The user is locked as the foreign-key
# check locks it, but before the counter (users before user_metrics, as deleting a user).
INSERT = f"""WITH new AS (
    INSERT INTO reports (id, user_id, {", ".join(SETTABLE)})
    SELECT $1::uuid, u.id, {", ".join(_GIVEN)}
    FROM users u WHERE u.id = $2 FOR KEY SHARE
    RETURNING {_REPORT}
), {metrics.count_new_report_cte("$3")}
SELECT {_REPORT} FROM new"""
# $1 the report, $2 the user (another user's report is a missing one).
BY_ID = f"SELECT {_REPORT} FROM reports WHERE id = $1 AND user_id = $2"
LOCK = "SELECT 1 FROM reports WHERE id = $1 AND user_id = $2 FOR UPDATE"


def _children(view: type[Any], table: str, order: str) -> str:
    """A report's rows of `table` as an array of ROW(...), each a tuple building `view`."""
    return (
        f"ARRAY(SELECT ROW({column_list(view, 'c')}) FROM {table} c"
        f" WHERE c.report_id = r.id ORDER BY {order})"
    )


# The report with its children, in FullReportView's field order (1 statement).
FULL = f"""SELECT {column_list(ReportView, "r")},
    {_children(CertificationView, "certification_progress", "c.id")},
    {_children(DocumentView, "generated_documents", "c.id")},
    {_children(PlanTaskView, "action_plan_progress", "c.day_number, c.id")}
FROM reports r WHERE r.id = $1 AND r.user_id = $2"""
_FULL_AT = len(dataclasses.fields(ReportView))  # where the children's arrays start


@functools.lru_cache(maxsize=32)
def page_sql(filters: tuple[str, ...], after_cursor: bool) -> str:
    """A keyset page of a user's reports, newest first (ix_reports_user_id_created_at):
    $1 the user, $2 the limit + 1, then the filters' values, then the cursor's."""
    where = ["user_id = $1", *(f"{name} = ${n}" for n, name in enumerate(filters, start=3))]
    if after_cursor:
        n = len(filters) + 3
        where.append(f"(created_at, id) < (${n}::timestamptz, ${n + 1}::uuid)")
    return (
        f"SELECT {_REPORT} FROM reports WHERE {' AND '.join(where)}"
        " ORDER BY created_at DESC, id DESC LIMIT $2"
    )


@functools.lru_cache(maxsize=128)
def update_sql(names: tuple[str, ...]) -> str:
    """$1 the report, $2 the user, $3… the new values of columns `names`; `updated_at`
    moves by trigger."""
    assigned = ", ".join(f"{name} = ${n}" for n, name in enumerate(names, start=3))
    return f"UPDATE reports SET {assigned} WHERE id = $1 AND user_id = $2 RETURNING {_REPORT}"


def _full(row: Sequence[Any]) -> FullReportView:
    """A FULL row: the report's columns, then its children's arrays of ROW(...) tuples."""
    certifications, documents, tasks = row[_FULL_AT:]
    children = (
        tuple(CertificationView(*item) for item in certifications),
        tuple(DocumentView(*item) for item in documents),
        tuple(PlanTaskView(*item) for item in tasks),
    )
    values: tuple[Any, ...] = (*row[:_FULL_AT], *children)
    return FullReportView(*values)


class ReportRepository(Repository):
    """A user's reports; every method is scoped to the acting `user_id`.

    Certifications, documents and the action plan are handled by collaborators
    (`certifications`, `documents`, `plan`); the methods below are their public names.
    """

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.certifications = Certifications(session)
        self.documents = Documents(session)
        self.plan = ActionPlans(session)

    async def create(
        self,
        *,
        user_id: uuid.UUID,
        product_name: str,
        destination_country: str,
        report_data: dict[str, Any],
        business_type: str | None = None,
        company_size: str | None = None,
        monthly_volume: int | None = None,
        product_image_url: str | None = None,
        ingredients: str | None = None,
        bom: str | None = None,
        price_range: str | None = None,
        payment_mode: str | None = None,
        hs_code: str | None = None,
        hs_code_confidence: Decimal | None = None,
        risk_score: int | None = None,
        estimated_cost: Decimal | None = None,
        estimated_timeline_days: int | None = None,
        status: str = "completed",
    ) -> ReportView:
        """Insert a report and count it in the owner's `reports_generated` (1 statement).

        Business type, company size and monthly volume default to the user's, read in the
        INSERT itself; a missing user is a `NotFoundError` and nothing is written.
        """
        # The keyword arguments named like report columns, i.e. all but user_id.
        values = {name: value for name, value in locals().items() if name in UPDATABLE}
        check_id("user_id", user_id)
        validated(Report, {k: v for k, v in values.items() if k not in FROM_USER})
        validated(Report, {k: values[k] for k in FROM_USER if values[k] is not None})
        values["report_data"] = json_param(report_data)
        args = (values[name] for name in SETTABLE)
        row = await executor.fetchrow(self.session, INSERT, new_id(), user_id, new_id(), *args)
        if row is None:
            raise NotFoundError(f"user {user_id} not found")
        return ReportView(*row)

    async def get_or_none(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> ReportView | None:
        """The report if `user_id` owns it, else None (1 statement)."""
        row = await executor.fetchrow(self.session, BY_ID, *owned(report_id, user_id))
        return None if row is None else ReportView(*row)

    async def get(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> ReportView:
        """The report, or `NotFoundError` (also for another user's report)."""
        report = await self.get_or_none(report_id, user_id=user_id)
        if report is None:
            raise report_missing(report_id)
        return report

    async def get_full(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> FullReportView:
        """The report with its certifications, documents and action plan (1 statement)."""
        row = await executor.fetchrow(self.session, FULL, *owned(report_id, user_id))
        if row is None:
            raise report_missing(report_id)
        return _full(row)

    async def list_for_user(
        self,
        user_id: uuid.UUID,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: str | None = None,
        destination_country: str | None = None,
        hs_code: str | None = None,
    ) -> Page[ReportView]:
        """The user's reports, newest first, one keyset page per statement.

        Served by ix_reports_user_id_created_at; pass `next_cursor` back for the next page.
        """
        check_id("user_id", user_id)
        check_limit(limit)
        filters = {"status": status, "destination_country": destination_country, "hs_code": hs_code}
        filters = validated(Report, {k: v for k, v in filters.items() if v is not None})
        args: list[Any] = [user_id, limit + 1, *filters.values()]
        if cursor is not None:
            args.extend(decode_cursor(cursor))
        sql = page_sql(tuple(filters), cursor is not None)
        found = await executor.fetch(self.session, sql, *args)
        reports = [ReportView(*row) for row in found[:limit]]
        if len(found) <= limit:
            return Page(reports, None)
        last = reports[-1]
        return Page(reports, encode_cursor(last.created_at, last.id))

    async def update(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID, **fields: Any
    ) -> ReportView:
        """Change report fields in one UPDATE … RETURNING; `updated_at` moves by trigger."""
        scope = owned(report_id, user_id)
        check_fields(fields, UPDATABLE)
        if not fields:
            return await self.get(report_id, user_id=user_id)
        values = validated(Report, fields)
        if "report_data" in values:
            values["report_data"] = json_param(values["report_data"])
        names = tuple(sorted(values))
        args = (values[name] for name in names)
        row = await executor.fetchrow(self.session, update_sql(names), *scope, *args)
        if row is None:
            raise report_missing(report_id)
        return ReportView(*row)

    async def delete(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> None:
        """Delete the report and, by cascade, all that hangs off it (2 statements).

        The owner's counters drop by what the report held, so they keep equalling the rows:
        the report is locked first, so no child can be added or change status meanwhile,
        and the delete's own snapshot (taken after the lock) sees every child.
        """
        scope = owned(report_id, user_id)
        if await executor.fetchrow(self.session, LOCK, *scope) is None:
            raise report_missing(report_id)
        await metrics.delete_report_and_uncount(self.session, *scope)

    # --- Certifications, documents and the action plan: the collaborators' methods ---

    async def add_certification(
        self,
        report_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        certification_id: str,
        certification_name: str,
        certification_type: str,
        status: str = NOT_STARTED,
        documents_completed: list[Any] | None = None,
        notes: str | None = None,
    ) -> CertificationView:
        """Track a certification the report needs, counted if added completed (1 statement)."""
        return await self.certifications.add(
            report_id,
            user_id=user_id,
            certification_id=certification_id,
            certification_name=certification_name,
            certification_type=certification_type,
            status=status,
            documents_completed=documents_completed,
            notes=notes,
        )

    async def get_certification(
        self, certification_progress_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> CertificationView:
        """One certification of the user's, or `NotFoundError` (1 statement)."""
        return await self.certifications.get(certification_progress_id, user_id=user_id)

    async def update_certification(
        self,
        certification_progress_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        status: str | Unset = UNSET,
        notes: str | Unset | None = UNSET,
        documents_completed: list[Any] | Unset = UNSET,
    ) -> CertificationView:
        """Change status, notes or completed documents; status changes stamp the dates and
        keep `certifications_completed` true, even under concurrent updates (1 statement)."""
        return await self.certifications.update(
            certification_progress_id,
            user_id=user_id,
            status=status,
            notes=notes,
            documents_completed=documents_completed,
        )

    async def list_certifications(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> list[CertificationView]:
        """The report's certifications in the order they were added (1 statement)."""
        return await self.certifications.of_report(report_id, user_id=user_id)

    async def add_document(
        self,
        report_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        document_type: str,
        document_data: dict[str, Any],
        pdf_url: str | None = None,
        editable_url: str | None = None,
        validation_results: dict[str, Any] | None = None,
        is_valid: bool = False,
    ) -> DocumentView:
        """Store a generated document and count it in `documents_generated` (1 statement)."""
        return await self.documents.add(
            report_id,
            user_id=user_id,
            document_type=document_type,
            document_data=document_data,
            pdf_url=pdf_url,
            editable_url=editable_url,
            validation_results=validation_results,
            is_valid=is_valid,
        )

    async def list_documents(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID, document_type: str | None = None
    ) -> list[DocumentView]:
        """The report's documents, oldest first, optionally of one type (1 statement)."""
        return await self.documents.of_report(
            report_id, user_id=user_id, document_type=document_type
        )

    async def save_action_plan(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID, tasks: Sequence[Mapping[str, Any]]
    ) -> list[PlanTaskView]:
        """Insert or update the tasks by task_id, whatever their number, in one statement.

        Tasks not given are kept. Returns the saved tasks in the order given.
        """
        return await self.plan.save(report_id, user_id=user_id, tasks=tasks)

    async def complete_task(
        self, report_id: uuid.UUID, task_id: str, *, user_id: uuid.UUID, completed: bool = True
    ) -> PlanTaskView:
        """Mark a task done (stamping `completed_at` once) or not done (clearing it)."""
        return await self.plan.complete_task(
            report_id, task_id, user_id=user_id, completed=completed
        )

    async def get_action_plan(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> ActionPlan:
        """The plan grouped by day with each day's progress (1 statement)."""
        return await self.plan.get(report_id, user_id=user_id)
