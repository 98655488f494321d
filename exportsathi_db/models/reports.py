"""reports and what hangs off them: certifications, generated documents, the 7-day plan."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, Index, Numeric, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from exportsathi_db.models.base import (
    JSON_ARRAY,
    JSON_OBJECT,
    Base,
    IdMixin,
    TimestampMixin,
    children,
    foreign_key,
)
from exportsathi_db.models.enums import (
    BusinessType,
    CertificationStatus,
    CompanySize,
    ReportStatus,
    sql_in,
)

if TYPE_CHECKING:
    from exportsathi_db.models.analyses import FinanceAnalysis, LogisticsAnalysis
    from exportsathi_db.models.chat import ChatSession
    from exportsathi_db.models.users import User

_NON_NEGATIVE = {"range": (0, 2**31 - 1)}


class Report(IdMixin, TimestampMixin, Base):
    __tablename__ = "reports"
    __table_args__ = (
        CheckConstraint(sql_in("business_type", BusinessType), name="business_type"),
        CheckConstraint(sql_in("company_size", CompanySize), name="company_size"),
        CheckConstraint(sql_in("status", ReportStatus), name="status"),
        CheckConstraint("risk_score BETWEEN 0 AND 100", name="risk_score_range"),
        CheckConstraint("hs_code_confidence BETWEEN 0 AND 100", name="hs_code_confidence_range"),
        CheckConstraint(
            "monthly_volume >= 0 AND estimated_cost >= 0 AND estimated_timeline_days >= 0",
            name="non_negative",
        ),
        Index(None, "hs_code"),
        Index(None, "destination_country"),
        Index("ix_reports_created_at", text("created_at DESC")),
        # A user's latest reports, newest first, with the id as a tie-breaker for keyset pages.
        Index("ix_reports_user_id_created_at", "user_id", text("created_at DESC"), text("id DESC")),
    )

    user_id: Mapped[uuid.UUID] = foreign_key("users")
    product_name: Mapped[str] = mapped_column(String(255), nullable=False)
    product_image_url: Mapped[str | None] = mapped_column(String(500))
    ingredients: Mapped[str | None] = mapped_column(Text)
    bom: Mapped[str | None] = mapped_column(Text)
    destination_country: Mapped[str] = mapped_column(String(100), nullable=False)
    business_type: Mapped[str] = mapped_column(
        String(50), nullable=False, info={"choices": list(BusinessType)}
    )
    company_size: Mapped[str] = mapped_column(
        String(50), nullable=False, info={"choices": list(CompanySize)}
    )
    monthly_volume: Mapped[int | None] = mapped_column(info=_NON_NEGATIVE)
    price_range: Mapped[str | None] = mapped_column(String(100))
    payment_mode: Mapped[str | None] = mapped_column(String(100))
    hs_code: Mapped[str | None] = mapped_column(String(20))
    hs_code_confidence: Mapped[Decimal | None] = mapped_column(
        Numeric(5, 2), info={"range": (0, 100)}
    )
    risk_score: Mapped[int | None] = mapped_column(info={"range": (0, 100)})
    estimated_cost: Mapped[Decimal | None] = mapped_column(
        Numeric(12, 2), info={"range": (0, Decimal("9999999999.99"))}
    )
    estimated_timeline_days: Mapped[int | None] = mapped_column(info=_NON_NEGATIVE)
    report_data: Mapped[dict[str, Any]] = mapped_column(JSON_OBJECT, nullable=False)
    status: Mapped[str] = mapped_column(
        String(50),
        nullable=False,
        default=ReportStatus.COMPLETED.value,
        server_default=ReportStatus.COMPLETED.value,
        info={"choices": list(ReportStatus)},
    )

    user: Mapped[User] = relationship(back_populates="reports", lazy="raise")
    certifications: Mapped[list[CertificationProgress]] = children(
        "report", order_by="CertificationProgress.id"
    )
    documents: Mapped[list[GeneratedDocument]] = children("report", order_by="GeneratedDocument.id")
    action_plan: Mapped[list[ActionPlanProgress]] = children(
        "report", order_by="(ActionPlanProgress.day_number, ActionPlanProgress.id)"
    )
    chat_sessions: Mapped[list[ChatSession]] = children("report")
    finance_analysis: Mapped[FinanceAnalysis | None] = children("report")
    logistics_analysis: Mapped[LogisticsAnalysis | None] = children("report")


class CertificationProgress(IdMixin, TimestampMixin, Base):
    __tablename__ = "certification_progress"
    __table_args__ = (
        CheckConstraint(sql_in("status", CertificationStatus), name="status"),
        Index(None, "status"),
    )

    user_id: Mapped[uuid.UUID] = foreign_key("users")
    report_id: Mapped[uuid.UUID] = foreign_key("reports")
    certification_id: Mapped[str] = mapped_column(String(100), nullable=False)
    certification_name: Mapped[str] = mapped_column(String(255), nullable=False)
    certification_type: Mapped[str] = mapped_column(String(50), nullable=False)
    status: Mapped[str] = mapped_column(
        String(50),
        nullable=False,
        default=CertificationStatus.NOT_STARTED.value,
        server_default=CertificationStatus.NOT_STARTED.value,
        info={"choices": list(CertificationStatus)},
    )
    documents_completed: Mapped[list[Any]] = mapped_column(
        JSON_ARRAY, nullable=False, default=list, server_default=text("'[]'::jsonb")
    )
    notes: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="certifications", lazy="raise")
    report: Mapped[Report] = relationship(back_populates="certifications", lazy="raise")


class GeneratedDocument(IdMixin, TimestampMixin, Base):
    __tablename__ = "generated_documents"
    __table_args__ = (Index(None, "document_type"),)

    user_id: Mapped[uuid.UUID] = foreign_key("users")
    report_id: Mapped[uuid.UUID] = foreign_key("reports")
    document_type: Mapped[str] = mapped_column(String(100), nullable=False)
    document_data: Mapped[dict[str, Any]] = mapped_column(JSON_OBJECT, nullable=False)
    pdf_url: Mapped[str | None] = mapped_column(String(500))
    editable_url: Mapped[str | None] = mapped_column(String(500))
    validation_results: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    is_valid: Mapped[bool] = mapped_column(
        nullable=False, default=False, server_default=text("false")
    )

    user: Mapped[User] = relationship(back_populates="documents", lazy="raise")
    report: Mapped[Report] = relationship(back_populates="documents", lazy="raise")


class ActionPlanProgress(IdMixin, TimestampMixin, Base):
    __tablename__ = "action_plan_progress"
    __table_args__ = (
        UniqueConstraint("report_id", "task_id"),
        CheckConstraint("day_number BETWEEN 1 AND 7", name="day_number_range"),
        Index(None, "completed"),
    )

    user_id: Mapped[uuid.UUID] = foreign_key("users")
    report_id: Mapped[uuid.UUID] = foreign_key("reports")
    task_id: Mapped[str] = mapped_column(String(100), nullable=False)
    day_number: Mapped[int] = mapped_column(nullable=False, info={"range": (1, 7)})
    task_title: Mapped[str] = mapped_column(String(255), nullable=False)
    task_description: Mapped[str | None] = mapped_column(Text)
    task_category: Mapped[str | None] = mapped_column(String(50))
    completed: Mapped[bool] = mapped_column(
        nullable=False, default=False, server_default=text("false")
    )
    completed_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="action_plan_tasks", lazy="raise")
    report: Mapped[Report] = relationship(back_populates="action_plan", lazy="raise")
