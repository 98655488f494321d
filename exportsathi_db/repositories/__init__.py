"""One repository per aggregate; each takes an AsyncSession and never commits."""

from exportsathi_db.repositories.analyses import AnalysisRepository
from exportsathi_db.repositories.base import Page
from exportsathi_db.repositories.chat import ChatRepository
from exportsathi_db.repositories.reports import UNSET, ActionPlan, PlanDay, ReportRepository
from exportsathi_db.repositories.users import UserRepository

__all__ = [
    "UNSET",
    "ActionPlan",
    "AnalysisRepository",
    "ChatRepository",
    "Page",
    "PlanDay",
    "ReportRepository",
    "UserRepository",
]
