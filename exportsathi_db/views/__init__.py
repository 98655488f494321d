"""Read models: what the repositories return. Frozen, typed, built straight from rows, and
usable as FastAPI response models; the ORM models in `exportsathi_db.models` stay the schema."""

from exportsathi_db.views.analyses import (
    FinanceAnalysisView,
    LogisticsAnalysisView,
    UserMetricsView,
)
from exportsathi_db.views.chat import ChatMessageView, ChatSessionView
from exportsathi_db.views.reports import (
    ActionPlan,
    CertificationView,
    DocumentView,
    FullReportView,
    PlanDay,
    PlanTaskView,
    ReportView,
)
from exportsathi_db.views.users import UserView

__all__ = [
    "ActionPlan",
    "CertificationView",
    "ChatMessageView",
    "ChatSessionView",
    "DocumentView",
    "FinanceAnalysisView",
    "FullReportView",
    "LogisticsAnalysisView",
    "PlanDay",
    "PlanTaskView",
    "ReportView",
    "UserMetricsView",
    "UserView",
]
