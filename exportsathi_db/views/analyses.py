"""Read models of a report's finance and logistics analyses, and of a user's metrics."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from exportsathi_db.views.base import read_model


@read_model
class FinanceAnalysisView:
    """A report's finance analysis (one per report); each part is a JSON object or None."""

    id: uuid.UUID
    user_id: uuid.UUID
    report_id: uuid.UUID
    working_capital_data: dict[str, Any]
    pre_shipment_credit_data: dict[str, Any] | None
    rodtep_benefit_data: dict[str, Any] | None
    gst_refund_data: dict[str, Any] | None
    cash_flow_timeline: dict[str, Any] | None
    financing_options: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@read_model
class LogisticsAnalysisView:
    """A report's logistics analysis (one per report); each part is a JSON object or None."""

    id: uuid.UUID
    user_id: uuid.UUID
    report_id: uuid.UUID
    lcl_fcl_comparison: dict[str, Any] | None
    rms_probability_data: dict[str, Any] | None
    route_analysis: dict[str, Any] | None
    freight_estimate: dict[str, Any] | None
    insurance_recommendation: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@read_model
class UserMetricsView:
    """A user's success metrics: all zeros (and no export date) before their first event.

    The counters only: the row's own id and timestamps are bookkeeping, and a user without
    a row yet has none of them.
    """

    user_id: uuid.UUID
    reports_generated: int
    certifications_completed: int
    documents_generated: int
    exports_completed: int
    cost_savings: Decimal
    timeline_reduction_days: int
    last_export_date: datetime | None
