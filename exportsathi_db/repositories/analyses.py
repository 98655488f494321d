"""AnalysisRepository: a report's finance and logistics analyses, and a user's success metrics."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from exportsathi_db.errors import NotFoundError
from exportsathi_db.models import FinanceAnalysis, LogisticsAnalysis, UserMetrics, new_id
from exportsathi_db.models.base import Base, validated
from exportsathi_db.repositories import analyses_sql as sql
from exportsathi_db.repositories import executor, metrics
from exportsathi_db.repositories.base import Repository, check_id
from exportsathi_db.validation import check_aware
from exportsathi_db.views import FinanceAnalysisView, LogisticsAnalysisView, UserMetricsView


def _json(value: Any) -> str | None:
    """A JSONB parameter as the statements take it: JSON text, None for SQL NULL."""
    return None if value is None else json.dumps(value)


class AnalysisRepository(Repository):
    """Analyses are reached through their report and scoped to its owner."""

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
    ) -> FinanceAnalysisView:
        """Create or wholly replace the report's finance analysis (parts left out become NULL);
        1 statement."""
        values = {
            "working_capital_data": working_capital_data,
            "pre_shipment_credit_data": pre_shipment_credit_data,
            "rodtep_benefit_data": rodtep_benefit_data,
            "gst_refund_data": gst_refund_data,
            "cash_flow_timeline": cash_flow_timeline,
            "financing_options": financing_options,
        }
        row = await self._save(
            FinanceAnalysis, sql.SAVE_FINANCE, sql.FINANCE_PARTS, report_id, user_id, values
        )
        return FinanceAnalysisView(*row)

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
    ) -> LogisticsAnalysisView:
        """Create or wholly replace the report's logistics analysis (parts left out become
        NULL); 1 statement."""
        values = {
            "lcl_fcl_comparison": lcl_fcl_comparison,
            "rms_probability_data": rms_probability_data,
            "route_analysis": route_analysis,
            "freight_estimate": freight_estimate,
            "insurance_recommendation": insurance_recommendation,
        }
        row = await self._save(
            LogisticsAnalysis, sql.SAVE_LOGISTICS, sql.LOGISTICS_PARTS, report_id, user_id, values
        )
        return LogisticsAnalysisView(*row)

    async def _save(
        self,
        model: type[Base],
        statement: str,
        parts: tuple[str, ...],
        report_id: uuid.UUID,
        user_id: uuid.UUID,
        values: dict[str, Any],
    ) -> executor.Row:
        """Upsert the analysis: `statement` binds the id, report, user, then `parts` in order."""
        check_id("report_id", report_id)
        check_id("user_id", user_id)
        validated(model, values)
        encoded = [_json(values[part]) for part in parts]
        row = await executor.fetchrow(
            self.session, statement, new_id(), report_id, user_id, *encoded
        )
        if row is None:
            raise NotFoundError(f"report {report_id} not found")
        return row

    async def get_finance_or_none(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> FinanceAnalysisView | None:
        """The report's finance analysis, or None (none yet, or not the user's); 1 statement."""
        row = await self._get(sql.GET_FINANCE, report_id, user_id)
        return None if row is None else FinanceAnalysisView(*row)

    async def get_finance(self, report_id: uuid.UUID, *, user_id: uuid.UUID) -> FinanceAnalysisView:
        """The report's finance analysis, or `NotFoundError` (none yet, or not the user's)."""
        found = await self.get_finance_or_none(report_id, user_id=user_id)
        if found is None:
            raise NotFoundError(f"no finance analysis for report {report_id}")
        return found

    async def get_logistics_or_none(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> LogisticsAnalysisView | None:
        """The report's logistics analysis, or None (none yet, or not the user's); 1 statement."""
        row = await self._get(sql.GET_LOGISTICS, report_id, user_id)
        return None if row is None else LogisticsAnalysisView(*row)

    async def get_logistics(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> LogisticsAnalysisView:
        """The report's logistics analysis, or `NotFoundError` (none yet, or not the user's)."""
        found = await self.get_logistics_or_none(report_id, user_id=user_id)
        if found is None:
            raise NotFoundError(f"no logistics analysis for report {report_id}")
        return found

    async def _get(
        self, statement: str, report_id: uuid.UUID, user_id: uuid.UUID
    ) -> executor.Row | None:
        check_id("report_id", report_id)
        check_id("user_id", user_id)
        return await executor.fetchrow(self.session, statement, report_id, user_id)

    async def get_metrics(self, user_id: uuid.UUID) -> UserMetricsView:
        """The user's metrics, zeros before their first event (1 statement, nothing written);
        `NotFoundError` if no such user."""
        found = await metrics.get(self.session, check_id("user_id", user_id))
        if found is None:
            raise NotFoundError(f"user {user_id} not found")
        return found

    async def record_export(
        self,
        user_id: uuid.UUID,
        *,
        cost_savings: Decimal | int,
        timeline_reduction_days: int,
        exported_at: datetime | None = None,
    ) -> UserMetricsView:
        """Count one completed export and add its savings and days, in one atomic upsert;
        the metrics after it. A missing user is a `NotFoundError` (nothing written)."""
        check_id("user_id", user_id)
        # numeric(12, 2) and non-negative: an exact amount (Decimal or int, never a float),
        # refused rather than rounded; the days non-negative and within int4.
        validated(
            UserMetrics,
            {"cost_savings": cost_savings, "timeline_reduction_days": timeline_reduction_days},
        )
        check_aware("exported_at", exported_at)
        after = await metrics.record_export(
            self.session,
            user_id,
            cost_savings=cost_savings,
            timeline_reduction_days=timeline_reduction_days,
            exported_at=exported_at,
        )
        if after is None:
            raise NotFoundError(f"user {user_id} not found")
        return after
