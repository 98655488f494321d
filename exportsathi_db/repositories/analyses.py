"""AnalysisRepository: a report's finance and logistics analyses, and a user's success metrics."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import FinanceAnalysis, LogisticsAnalysis, UserMetrics, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.repositories import analyses_sql as sql
from exportsathi_db.repositories.base import Repository, translate_errors
from exportsathi_db.repositories.fastpath import adopt, driver, json_param
from exportsathi_db.validation import check_aware

Analysis = TypeVar("Analysis", FinanceAnalysis, LogisticsAnalysis)
_CENT = Decimal("0.01")


def _check_parts(model: type[Analysis], values: dict[str, Any]) -> dict[str, Any]:
    """Each analysis part is a JSON object (or None), checked before any SQL is sent."""
    return validated(model, values)


def _check_money(field: str, value: Any) -> Decimal:
    """A non-negative amount in rupees with at most two decimals; floats are refused."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise InvalidDataError(field, f"must be a Decimal (or int); got {type(value).__name__}")
    amount = Decimal(value)
    if not amount.is_finite():
        raise InvalidDataError(field, f"must be a finite amount; got {amount}")
    validated(UserMetrics, {field: amount})  # the column's range, before quantize can overflow
    if amount != amount.quantize(_CENT):
        raise InvalidDataError(field, "must have at most two decimals (paise); not rounded")
    return amount


class AnalysisRepository(Repository):
    """Analyses are reached through their report and scoped to its owner."""

    @translate_errors
    async def save_finance(
        self,
        report_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        working_capital_data: dict[str, Any],
        pre_shipment_credit_data: dict[str, Any] | None = None,
        rodtep_benefit_data: dict[str, Any] | None = None,
        gst_refund_data: dict[str, Any] | None = None,
        cash_flow_timeline: dict[str, Any] | None = None,
        financing_options: dict[str, Any] | None = None,
    ) -> FinanceAnalysis:
        """Create or wholly replace the report's finance analysis (parts left out become NULL)."""
        if working_capital_data is None:
            raise InvalidDataError("working_capital_data", "is required")
        values = {
            "working_capital_data": working_capital_data,
            "pre_shipment_credit_data": pre_shipment_credit_data,
            "rodtep_benefit_data": rodtep_benefit_data,
            "gst_refund_data": gst_refund_data,
            "cash_flow_timeline": cash_flow_timeline,
            "financing_options": financing_options,
        }
        return await self._save(FinanceAnalysis, report_id, user_id, values)

    @translate_errors
    async def save_logistics(
        self,
        report_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        lcl_fcl_comparison: dict[str, Any] | None = None,
        rms_probability_data: dict[str, Any] | None = None,
        route_analysis: dict[str, Any] | None = None,
        freight_estimate: dict[str, Any] | None = None,
        insurance_recommendation: dict[str, Any] | None = None,
    ) -> LogisticsAnalysis:
        """Create or wholly replace the report's logistics analysis (parts left out become NULL)."""
        values = {
            "lcl_fcl_comparison": lcl_fcl_comparison,
            "rms_probability_data": rms_probability_data,
            "route_analysis": route_analysis,
            "freight_estimate": freight_estimate,
            "insurance_recommendation": insurance_recommendation,
        }
        return await self._save(LogisticsAnalysis, report_id, user_id, values)

    async def _save(
        self,
        model: type[Analysis],
        report_id: uuid.UUID,
        user_id: uuid.UUID,
        values: dict[str, Any],
    ) -> Analysis:
        _check_parts(model, values)
        parts = [json_param(values[part]) for part in sql.PARTS[model]]
        raw = await driver(self.session)
        row = await raw.fetchrow(sql.SAVE[model], new_id(), report_id, user_id, *parts)
        if row is None:
            raise NotFoundError(f"report {report_id} not found")
        return adopt(self.session, model, row)

    @translate_errors
    async def get_finance_or_none(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> FinanceAnalysis | None:
        return await self._get(FinanceAnalysis, report_id, user_id)

    async def get_finance(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> FinanceAnalysis:
        """The report's finance analysis, or `NotFoundError` (none yet, or not the user's)."""
        found = await self.get_finance_or_none(report_id, user_id=user_id)
        if found is None:
            raise NotFoundError(f"no finance analysis for report {report_id}")
        return found

    @translate_errors
    async def get_logistics_or_none(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> LogisticsAnalysis | None:
        return await self._get(LogisticsAnalysis, report_id, user_id)

    async def get_logistics(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> LogisticsAnalysis:
        """The report's logistics analysis, or `NotFoundError` (none yet, or not the user's)."""
        found = await self.get_logistics_or_none(report_id, user_id=user_id)
        if found is None:
            raise NotFoundError(f"no logistics analysis for report {report_id}")
        return found

    async def _get(
        self, model: type[Analysis], report_id: uuid.UUID, user_id: uuid.UUID
    ) -> Analysis | None:
        row = await (await driver(self.session)).fetchrow(sql.GET[model], report_id, user_id)
        return None if row is None else adopt(self.session, model, row)

    @translate_errors
    async def get_metrics(self, user_id: uuid.UUID) -> UserMetrics:
        """The user's metrics; zeros (a transient, unsaved row) before their first event."""
        row = await (await driver(self.session)).fetchrow(sql.GET_METRICS, user_id)
        if row is None:
            raise NotFoundError(f"user {user_id} not found")
        if row["id"] is not None:
            return adopt(self.session, UserMetrics, row)
        return UserMetrics(
            user_id=user_id,
            reports_generated=0,
            certifications_completed=0,
            documents_generated=0,
            exports_completed=0,
            cost_savings=Decimal("0.00"),
            timeline_reduction_days=0,
            last_export_date=None,
        )

    @translate_errors
    async def record_export(
        self,
        user_id: uuid.UUID,
        *,
        cost_savings: Decimal | int,
        timeline_reduction_days: int,
        exported_at: datetime | None = None,
    ) -> UserMetrics:
        """Count one completed export and add its savings, in one atomic upsert.

        INSERT ... SELECT FROM users: a missing user is a `NotFoundError`, not an FK error.
        """
        amount = _check_money("cost_savings", cost_savings)
        if timeline_reduction_days is None:
            raise InvalidDataError("timeline_reduction_days", "is required")
        validated(UserMetrics, {"timeline_reduction_days": timeline_reduction_days})
        check_aware("exported_at", exported_at)
        raw = await driver(self.session)
        row = await raw.fetchrow(
            sql.RECORD_EXPORT, new_id(), user_id, amount, timeline_reduction_days, exported_at
        )
        if row is None:
            raise NotFoundError(f"user {user_id} not found")
        return adopt(self.session, UserMetrics, row)
