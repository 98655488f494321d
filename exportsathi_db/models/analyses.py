"""finance_analysis and logistics_analysis: one row per report, replaced by upsert."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from exportsathi_db.models.base import JSON_OBJECT, Base, IdMixin, TimestampMixin, foreign_key

if TYPE_CHECKING:
    from exportsathi_db.models.reports import Report
    from exportsathi_db.models.users import User


class FinanceAnalysis(IdMixin, TimestampMixin, Base):
    __tablename__ = "finance_analysis"
    __table_args__ = (UniqueConstraint("report_id"),)

    user_id: Mapped[uuid.UUID] = foreign_key("users")
    report_id: Mapped[uuid.UUID] = foreign_key("reports", index=False)
    working_capital_data: Mapped[dict[str, Any]] = mapped_column(JSON_OBJECT, nullable=False)
    pre_shipment_credit_data: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    rodtep_benefit_data: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    gst_refund_data: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    cash_flow_timeline: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    financing_options: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)

    user: Mapped[User] = relationship(back_populates="finance_analyses", lazy="raise")
    report: Mapped[Report] = relationship(back_populates="finance_analysis", lazy="raise")


class LogisticsAnalysis(IdMixin, TimestampMixin, Base):
    __tablename__ = "logistics_analysis"
    __table_args__ = (UniqueConstraint("report_id"),)

    user_id: Mapped[uuid.UUID] = foreign_key("users")
    report_id: Mapped[uuid.UUID] = foreign_key("reports", index=False)
    lcl_fcl_comparison: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    rms_probability_data: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    route_analysis: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    freight_estimate: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    insurance_recommendation: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)

    user: Mapped[User] = relationship(back_populates="logistics_analyses", lazy="raise")
    report: Mapped[Report] = relationship(back_populates="logistics_analysis", lazy="raise")
