"""ReportRepository: export-readiness reports, and through them certifications, documents
and the 7-day action plan (see report_children.py and action_plan.py)."""

from __future__ import annotations

import functools
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Select, bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.dml import ReturningUpdate

from exportsathi_db.errors import NotFoundError
from exportsathi_db.models import Report, User, new_id
from exportsathi_db.repositories.action_plan import ActionPlan, ActionPlanMethods, PlanDay
from exportsathi_db.repositories.base import (
    Page,
    bump_metrics,
    check_limit,
    decode_cursor,
    encode_cursor,
    translate_errors,
)
from exportsathi_db.repositories.report_children import UNSET, ReportChildrenMethods
from exportsathi_db.repositories.report_common import (
    OWNED_REPORT,
    check_fields,
    check_id,
    checked,
    owner,
    returning_orm,
    table_of,
    value_param,
    value_params,
)

__all__ = ["UNSET", "ActionPlan", "PlanDay", "ReportRepository"]

# Everything but the identity, the owner and the server-kept timestamps, in table order.
FIXED = ("id", "user_id", "created_at", "updated_at")
UPDATABLE = frozenset(Report.__table__.columns.keys()) - set(FIXED)
_SETTABLE = tuple(c.key for c in Report.__table__.columns if c.key in UPDATABLE)
# Profile fields a new report copies from its user unless the caller gives them.
_FROM_USER = ("business_type", "company_size", "monthly_volume")

# The user's profile is read by the INSERT itself: no user, no row (and no error).
_CREATE = returning_orm(
    Report,
    insert(table_of(Report)).from_select(
        ["id", "user_id", *_SETTABLE],
        select(
            bindparam("new_id", type_=UUID(as_uuid=True)),
            User.id,
            *(
                func.coalesce(value_param(Report, name), getattr(User, name))
                if name in _FROM_USER
                else value_param(Report, name)
                for name in _SETTABLE
            ),
        ).where(User.id == bindparam("scope_user_id")),
    ),
)
_OWNED = (Report.id == bindparam("scope_report_id"), Report.user_id == bindparam("scope_user_id"))
_GET = select(Report).where(*_OWNED)
_GET_FULL = _GET.options(
    selectinload(Report.certifications),
    selectinload(Report.documents),
    selectinload(Report.action_plan),
).execution_options(populate_existing=True)

_LOCK = OWNED_REPORT.with_for_update()
# Lock the report's certifications (their latest status counts), delete the report (children
# go by cascade) and take what it held off the owner's counters, in one statement.
_DELETE_AND_UNCOUNT = text(
    """
    WITH certs AS (
        SELECT status FROM certification_progress WHERE report_id = :scope_report_id FOR UPDATE
    ), gone AS (
        DELETE FROM reports WHERE id = :scope_report_id
    )
    UPDATE user_metrics SET
        reports_generated = greatest(reports_generated - 1, 0),
        documents_generated = greatest(documents_generated - (
            SELECT count(*) FROM generated_documents WHERE report_id = :scope_report_id), 0),
        certifications_completed = greatest(certifications_completed - (
            SELECT count(*) FROM certs WHERE status = 'completed'), 0)
    WHERE user_id = :scope_user_id
    """
)


@functools.lru_cache(maxsize=32)
def _page(filters: tuple[str, ...], after_cursor: bool) -> Select[Report]:
    """A keyset page of a user's reports, newest first (ix_reports_user_id_created_at)."""
    statement = select(Report).where(
        Report.user_id == bindparam("scope_user_id"),
        *(getattr(Report, name) == value_param(Report, name) for name in filters),
    )
    if after_cursor:
        after = tuple_(
            bindparam("after_created_at", type_=DateTime(timezone=True)),
            bindparam("after_id", type_=UUID(as_uuid=True)),
        )
        statement = statement.where(tuple_(Report.created_at, Report.id) < after)
    order = (Report.created_at.desc(), Report.id.desc())
    return statement.order_by(*order).limit(bindparam("limit_plus_one"))


@functools.lru_cache(maxsize=128)
def _update(names: tuple[str, ...]) -> ReturningUpdate[Report]:
    """Set columns `names` of the user's report from `v_<name>` parameters."""
    return (
        update(Report)
        .where(*_OWNED)
        .values({name: value_param(Report, name) for name in names})
        .returning(Report)
        .execution_options(populate_existing=True, synchronize_session=False)
    )


class ReportRepository(ReportChildrenMethods, ActionPlanMethods):
    """A user's reports; every method is scoped to the acting `user_id`."""

    @translate_errors
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
    ) -> Report:
        """Insert a report and count it in the owner's `reports_generated` (2 statements).

        Business type, company size and monthly volume default to the user's, read in the
        INSERT itself; a missing user is a `NotFoundError` and nothing is written.
        """
        # The keyword arguments named like report columns, i.e. all but user_id.
        values = {name: value for name, value in locals().items() if name in UPDATABLE}
        check_id("user_id", user_id)
        checked(Report, {k: v for k, v in values.items() if k not in _FROM_USER})
        checked(Report, {k: values[k] for k in _FROM_USER if values[k] is not None})
        params = {"new_id": new_id(), "scope_user_id": user_id, **value_params(values)}
        report: Report | None = (await self.session.scalars(_CREATE, params)).one_or_none()
        if report is None:
            raise NotFoundError(f"user {user_id} not found")
        await bump_metrics(self.session, user_id, reports_generated=1)
        return report

    @translate_errors
    async def get_or_none(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> Report | None:
        """The report if `user_id` owns it, else None (1 statement)."""
        return (await self.session.scalars(_GET, owner(report_id, user_id))).one_or_none()

    async def get(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> Report:
        """The report, or `NotFoundError` (also for another user's report)."""
        report = await self.get_or_none(report_id, user_id=user_id)
        if report is None:
            raise NotFoundError(f"report {report_id} not found")
        return report

    @translate_errors
    async def get_full(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> Report:
        """The report with certifications, documents and action plan loaded (4 statements)."""
        report = (await self.session.scalars(_GET_FULL, owner(report_id, user_id))).one_or_none()
        if report is None:
            raise NotFoundError(f"report {report_id} not found")
        return report

    @translate_errors
    async def list_for_user(
        self,
        user_id: uuid.UUID,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: str | None = None,
        destination_country: str | None = None,
        hs_code: str | None = None,
    ) -> Page[Report]:
        """The user's reports, newest first, one keyset page per statement.

        Served by ix_reports_user_id_created_at; pass `next_cursor` back for the next page.
        """
        check_id("user_id", user_id)
        check_limit(limit)
        filters = {"status": status, "destination_country": destination_country, "hs_code": hs_code}
        filters = checked(Report, {k: v for k, v in filters.items() if v is not None})
        params = {"scope_user_id": user_id, "limit_plus_one": limit + 1, **value_params(filters)}
        if cursor is not None:
            params["after_created_at"], params["after_id"] = decode_cursor(cursor)
        statement = _page(tuple(filters), cursor is not None)
        rows = list((await self.session.scalars(statement, params)).all())
        if len(rows) <= limit:
            return Page(rows, None)
        last = rows[limit - 1]
        return Page(rows[:limit], encode_cursor(last.created_at, last.id))

    @translate_errors
    async def update(self, report_id: uuid.UUID, *, user_id: uuid.UUID, **fields: Any) -> Report:
        """Change report fields in one UPDATE ... RETURNING; `updated_at` moves by trigger."""
        params = owner(report_id, user_id)
        check_fields(fields, UPDATABLE)
        if not fields:
            return await self.get(report_id, user_id=user_id)
        params |= value_params(checked(Report, fields))
        statement = _update(tuple(sorted(fields)))
        report = (await self.session.scalars(statement, params)).one_or_none()
        if report is None:
            raise NotFoundError(f"report {report_id} not found")
        return report

    @translate_errors
    async def delete(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> None:
        """Delete the report and, by cascade, all that hangs off it (2 statements).

        The owner's counters drop by what the report held, so they keep equalling the rows:
        the report is locked first, so no child can be added or change status meanwhile.
        """
        params = owner(report_id, user_id)
        if (await self.session.execute(_LOCK, params)).first() is None:
            raise NotFoundError(f"report {report_id} not found")
        await self.session.execute(_DELETE_AND_UNCOUNT, params)
        self._forget(report_id)

    def _forget(self, report_id: uuid.UUID) -> None:
        """Drop the deleted report and its loaded children from the session's identity map."""
        report = self.session.identity_map.get(identity_key(Report, report_id))
        if report is None:
            return
        for name in ("certifications", "documents", "action_plan"):
            for child in report.__dict__.get(name, ()):
                if child in self.session:
                    self.session.expunge(child)
        self.session.expunge(report)
