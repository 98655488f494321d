"""ReportRepository: export-readiness reports, and through them certifications, documents
and the 7-day action plan (see report_children.py and action_plan.py)."""

from __future__ import annotations

import functools
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.dml import ReturningUpdate

from exportsathi_db.errors import NotFoundError
from exportsathi_db.models import (
    ActionPlanProgress,
    CertificationProgress,
    GeneratedDocument,
    Report,
    new_id,
)
from exportsathi_db.models.base import validated
from exportsathi_db.repositories.action_plan import ActionPlan, ActionPlanMethods, PlanDay
from exportsathi_db.repositories.base import (
    Page,
    check_id,
    check_limit,
    decode_cursor,
    encode_cursor,
    translate_errors,
)
from exportsathi_db.repositories.fastpath import adopt, adopt_loaded, columns, driver, json_param
from exportsathi_db.repositories.report_children import UNSET, ReportChildrenMethods
from exportsathi_db.repositories.report_common import (
    OWNED_REPORT,
    check_fields,
    owner,
    record,
    typed,
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

# The report and the owner's reports_generated count in one statement; the user's profile is
# read by the INSERT itself: no user, no row, no count (and no error).
_GIVEN = (  # $4... the settable columns' values; the profile's fall back to the user's
    f"coalesce({typed(Report, name, n)}, u.{name})"
    if name in _FROM_USER
    else typed(Report, name, n)
    for n, name in enumerate(_SETTABLE, start=4)
)
_CREATE_SQL = f"""
    WITH new AS (
        INSERT INTO reports (id, user_id, {", ".join(_SETTABLE)})
        SELECT $1::uuid, u.id, {", ".join(_GIVEN)}
        FROM users u WHERE u.id = $2
        RETURNING {columns(Report)}
    ), counted AS (
        INSERT INTO user_metrics AS m (id, user_id, reports_generated)
        SELECT $3::uuid, new.user_id, 1 FROM new
        ON CONFLICT (user_id) DO UPDATE SET reports_generated = m.reports_generated + 1
    )
    SELECT {columns(Report)} FROM new"""
_OWNED = (Report.id == bindparam("scope_report_id"), Report.user_id == bindparam("scope_user_id"))
_GET_SQL = f"SELECT {columns(Report)} FROM reports WHERE id = $1 AND user_id = $2"
# The report with its children as arrays of ROW(...) in the relationships' order_by.
_CHILDREN = (
    ("certifications", CertificationProgress, "c.id"),
    ("documents", GeneratedDocument, "c.id"),
    ("action_plan", ActionPlanProgress, "c.day_number, c.id"),
)
_ARRAYS = (
    f"ARRAY(SELECT ROW({columns(model, 'c')}) FROM {model.__tablename__} c"
    f" WHERE c.report_id = r.id ORDER BY {order}) AS {name}"
    for name, model, order in _CHILDREN
)
_GET_FULL_SQL = f"""
    SELECT {columns(Report, "r")}, {", ".join(_ARRAYS)}
    FROM reports r WHERE r.id = $1 AND r.user_id = $2"""

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
def _page_sql(filters: tuple[str, ...], after_cursor: bool) -> str:
    """A keyset page of a user's reports, newest first (ix_reports_user_id_created_at):
    $1 the user, $2 the limit + 1, then the filters' values, then the cursor's."""
    where = ["user_id = $1", *(f"{name} = ${n}" for n, name in enumerate(filters, start=3))]
    if after_cursor:
        n = len(filters) + 3
        where.append(f"(created_at, id) < (${n}::timestamptz, ${n + 1}::uuid)")
    return (
        f"SELECT {columns(Report)} FROM reports WHERE {' AND '.join(where)}"
        " ORDER BY created_at DESC, id DESC LIMIT $2"
    )


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
        """Insert a report and count it in the owner's `reports_generated` (1 statement).

        Business type, company size and monthly volume default to the user's, read in the
        INSERT itself; a missing user is a `NotFoundError` and nothing is written.
        """
        # The keyword arguments named like report columns, i.e. all but user_id.
        values = {name: value for name, value in locals().items() if name in UPDATABLE}
        check_id("user_id", user_id)
        validated(Report, {k: v for k, v in values.items() if k not in _FROM_USER})
        validated(Report, {k: values[k] for k in _FROM_USER if values[k] is not None})
        values["report_data"] = json_param(report_data)
        raw = await driver(self.session)
        args = (values[name] for name in _SETTABLE)
        row = await raw.fetchrow(_CREATE_SQL, new_id(), user_id, new_id(), *args)
        if row is None:
            raise NotFoundError(f"user {user_id} not found")
        return adopt(self.session, Report, row)

    @translate_errors
    async def get_or_none(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> Report | None:
        """The report if `user_id` owns it, else None (1 statement)."""
        params = owner(report_id, user_id).values()  # $1 the report, $2 the user
        row = await (await driver(self.session)).fetchrow(_GET_SQL, *params)
        return None if row is None else adopt_loaded(self.session, Report, row)

    async def get(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> Report:
        """The report, or `NotFoundError` (also for another user's report)."""
        report = await self.get_or_none(report_id, user_id=user_id)
        if report is None:
            raise NotFoundError(f"report {report_id} not found")
        return report

    @translate_errors
    async def get_full(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> Report:
        """The report with certifications, documents and action plan loaded (1 statement).

        Everything is refreshed from the row, as a load with `populate_existing` would.
        """
        params = owner(report_id, user_id).values()  # $1 the report, $2 the user
        row = await (await driver(self.session)).fetchrow(_GET_FULL_SQL, *params)
        if row is None:
            raise NotFoundError(f"report {report_id} not found")
        report = adopt(self.session, Report, row)
        for name, model, _ in _CHILDREN:
            children = [adopt(self.session, model, record(model, item)) for item in row[name]]
            set_committed_value(report, name, children)
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
        filters = validated(Report, {k: v for k, v in filters.items() if v is not None})
        args: list[Any] = [user_id, limit + 1, *filters.values()]
        if cursor is not None:
            args.extend(decode_cursor(cursor))
        sql = _page_sql(tuple(filters), cursor is not None)
        found = await (await driver(self.session)).fetch(sql, *args)
        rows = [adopt_loaded(self.session, Report, row) for row in found[:limit]]
        if len(found) <= limit:
            return Page(rows, None)
        last = rows[-1]
        return Page(rows, encode_cursor(last.created_at, last.id))

    @translate_errors
    async def update(self, report_id: uuid.UUID, *, user_id: uuid.UUID, **fields: Any) -> Report:
        """Change report fields in one UPDATE ... RETURNING; `updated_at` moves by trigger."""
        params = owner(report_id, user_id)
        check_fields(fields, UPDATABLE)
        if not fields:
            return await self.get(report_id, user_id=user_id)
        params |= value_params(validated(Report, fields))
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
