"""Read models of reports and what hangs off them: certifications, generated documents and
the 7-day action plan (a report's tasks, also grouped by day)."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from exportsathi_db.views.base import read_model


@read_model
class ReportView:
    """An export-readiness report. `report_data` is the decoded JSONB object."""

    id: uuid.UUID
    user_id: uuid.UUID
    product_name: str
    product_image_url: str | None
    ingredients: str | None
    bom: str | None
    destination_country: str
    business_type: str
    company_size: str
    monthly_volume: int | None
    price_range: str | None
    payment_mode: str | None
    hs_code: str | None
    hs_code_confidence: Decimal | None
    risk_score: int | None
    estimated_cost: Decimal | None
    estimated_timeline_days: int | None
    report_data: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime


@read_model
class CertificationView:
    """A certification a report needs, and how far along it is."""

    id: uuid.UUID
    user_id: uuid.UUID
    report_id: uuid.UUID
    certification_id: str
    certification_name: str
    certification_type: str
    status: str
    documents_completed: list[Any]
    notes: str | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


@read_model
class DocumentView:
    """A generated document (invoice, packing list, ...) of a report."""

    id: uuid.UUID
    user_id: uuid.UUID
    report_id: uuid.UUID
    document_type: str
    document_data: dict[str, Any]
    pdf_url: str | None
    editable_url: str | None
    validation_results: dict[str, Any] | None
    is_valid: bool
    created_at: datetime
    updated_at: datetime


@read_model
class PlanTaskView:
    """One task of a report's 7-day action plan."""

    id: uuid.UUID
    user_id: uuid.UUID
    report_id: uuid.UUID
    task_id: str
    day_number: int
    task_title: str
    task_description: str | None
    task_category: str | None
    completed: bool
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


@read_model
class FullReportView(ReportView):
    """A report with its certifications and documents (in the order added) and its action
    plan's tasks (by day, then in the order saved)."""

    certifications: tuple[CertificationView, ...]
    documents: tuple[DocumentView, ...]
    action_plan: tuple[PlanTaskView, ...]


@read_model
class PlanDay:
    """One day of the plan: its tasks in order, and how many of them are done."""

    day_number: int
    tasks: tuple[PlanTaskView, ...]
    completed: int
    total: int


@read_model
class ActionPlan:
    """A report's plan by day (only days that have tasks); empty when nothing is planned."""

    report_id: uuid.UUID
    days: tuple[PlanDay, ...]
    completed: int
    total: int
