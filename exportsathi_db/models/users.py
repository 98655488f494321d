"""users: accounts and business profile; user_metrics: one row of success metrics per user."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from exportsathi_db.models.base import Base, IdMixin, TimestampMixin, children
from exportsathi_db.models.enums import BusinessType, CompanySize, sql_in
from exportsathi_db.validation import check_email, check_password_hash

if TYPE_CHECKING:
    from exportsathi_db.models.analyses import FinanceAnalysis, LogisticsAnalysis
    from exportsathi_db.models.chat import ChatSession
    from exportsathi_db.models.reports import (
        ActionPlanProgress,
        CertificationProgress,
        GeneratedDocument,
        Report,
    )

_NON_NEGATIVE = {"range": (0, 2**31 - 1)}


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(sql_in("business_type", BusinessType), name="business_type"),
        CheckConstraint(sql_in("company_size", CompanySize), name="company_size"),
        CheckConstraint("monthly_volume >= 0", name="monthly_volume_non_negative"),
        Index("uq_users_lower_email", func.lower(text("email")), unique=True),
        Index(None, "business_type"),
    )

    email: Mapped[str] = mapped_column(String(255), nullable=False, info={"check": check_email})
    password_hash: Mapped[str] = mapped_column(
        String(255), nullable=False, info={"check": check_password_hash}
    )
    business_type: Mapped[str] = mapped_column(
        String(50), nullable=False, info={"choices": list(BusinessType)}
    )
    company_size: Mapped[str] = mapped_column(
        String(50), nullable=False, info={"choices": list(CompanySize)}
    )
    company_name: Mapped[str | None] = mapped_column(String(255))
    monthly_volume: Mapped[int | None] = mapped_column(info=_NON_NEGATIVE)
    last_login: Mapped[datetime | None]

    reports: Mapped[list[Report]] = children("user")
    certifications: Mapped[list[CertificationProgress]] = children("user")
    documents: Mapped[list[GeneratedDocument]] = children("user")
    action_plan_tasks: Mapped[list[ActionPlanProgress]] = children("user")
    chat_sessions: Mapped[list[ChatSession]] = children("user")
    finance_analyses: Mapped[list[FinanceAnalysis]] = children("user")
    logistics_analyses: Mapped[list[LogisticsAnalysis]] = children("user")
    metrics: Mapped[UserMetrics | None] = children("user")

    def __repr__(self) -> str:  # no password hash, no email: reprs end up in logs
        return f"User(id={self.id!r})"


class UserMetrics(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_metrics"
    __table_args__ = (
        CheckConstraint(
            "reports_generated >= 0 AND certifications_completed >= 0"
            " AND documents_generated >= 0 AND exports_completed >= 0"
            " AND cost_savings >= 0 AND timeline_reduction_days >= 0",
            name="counters_non_negative",
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    reports_generated: Mapped[int] = mapped_column(
        nullable=False, default=0, server_default=text("0"), info=_NON_NEGATIVE
    )
    certifications_completed: Mapped[int] = mapped_column(
        nullable=False, default=0, server_default=text("0"), info=_NON_NEGATIVE
    )
    documents_generated: Mapped[int] = mapped_column(
        nullable=False, default=0, server_default=text("0"), info=_NON_NEGATIVE
    )
    exports_completed: Mapped[int] = mapped_column(
        nullable=False, default=0, server_default=text("0"), info=_NON_NEGATIVE
    )
    cost_savings: Mapped[Decimal] = mapped_column(
        Numeric(12, 2),
        nullable=False,
        default=Decimal(0),
        server_default=text("0"),
        info={"range": (Decimal(0), Decimal("9999999999.99"))},
    )
    timeline_reduction_days: Mapped[int] = mapped_column(
        nullable=False, default=0, server_default=text("0"), info=_NON_NEGATIVE
    )
    last_export_date: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="metrics", lazy="raise")
