"""The ten tables of ../shared/SCHEMA.md as typed SQLAlchemy models."""

from exportsathi_db.models.analyses import FinanceAnalysis, LogisticsAnalysis
from exportsathi_db.models.base import NAMING_CONVENTION, Base, new_id
from exportsathi_db.models.chat import ChatMessage, ChatSession
from exportsathi_db.models.enums import (
    BusinessType,
    CertificationStatus,
    CompanySize,
    MessageRole,
    ReportStatus,
)
from exportsathi_db.models.reports import (
    ActionPlanProgress,
    CertificationProgress,
    GeneratedDocument,
    Report,
)
from exportsathi_db.models.users import User, UserMetrics

__all__ = [
    "NAMING_CONVENTION",
    "ActionPlanProgress",
    "Base",
    "BusinessType",
    "CertificationProgress",
    "CertificationStatus",
    "ChatMessage",
    "ChatSession",
    "CompanySize",
    "FinanceAnalysis",
    "GeneratedDocument",
    "LogisticsAnalysis",
    "MessageRole",
    "Report",
    "ReportStatus",
    "User",
    "UserMetrics",
    "new_id",
]
