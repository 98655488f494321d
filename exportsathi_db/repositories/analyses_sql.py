"""AnalysisRepository's statements, built once on first use and bound per call.

As in chat_sql.py: building a statement costs more than running it on a warm connection;
bind names start with `p_` so Core DML never takes them for column values.
"""

from __future__ import annotations

import functools
from typing import cast

from sqlalchemy import (
    DateTime,
    Executable,
    Integer,
    Numeric,
    Table,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert

from exportsathi_db.models import FinanceAnalysis, LogisticsAnalysis, Report, User, UserMetrics

PARTS = {
    FinanceAnalysis: (
        "working_capital_data",
        "pre_shipment_credit_data",
        "rodtep_benefit_data",
        "gst_refund_data",
        "cash_flow_timeline",
        "financing_options",
    ),
    LogisticsAnalysis: (
        "lcl_fcl_comparison",
        "rms_probability_data",
        "route_analysis",
        "freight_estimate",
        "insurance_recommendation",
    ),
}
COUNTERS = ("exports_completed", "cost_savings", "timeline_reduction_days")


@functools.cache
def save_analysis(model: type[FinanceAnalysis | LogisticsAnalysis]) -> Executable:
    """INSERT ... SELECT FROM reports (the ownership check) ON CONFLICT (report_id) DO UPDATE.

    One atomic statement: concurrent saves of a report leave one row, the last write's.
    """
    table = cast(Table, model.__table__)
    parts = PARTS[model]
    source = select(
        bindparam("p_id", type_=UUID),
        Report.user_id,
        Report.id,
        *(bindparam(f"p_{part}", type_=JSONB(none_as_null=True)) for part in parts),
    ).where(Report.id == bindparam("p_report_id"), Report.user_id == bindparam("p_user_id"))
    statement = insert(table).from_select(["id", "user_id", "report_id", *parts], source)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.report_id],
        set_={part: statement.excluded[part] for part in parts},
    )
    return (
        select(model)
        .from_statement(statement.returning(*table.c))
        .execution_options(populate_existing=True)
    )


@functools.cache
def get_analysis(model: type[FinanceAnalysis | LogisticsAnalysis]) -> Executable:
    return (
        select(model)
        .where(model.report_id == bindparam("p_report_id"), model.user_id == bindparam("p_user_id"))
        .execution_options(populate_existing=True)
    )


@functools.cache
def get_metrics() -> Executable:
    """The user (no row: no user) LEFT JOIN their metrics (None: no event yet)."""
    return (
        select(User.id, UserMetrics)
        .outerjoin(UserMetrics, UserMetrics.user_id == User.id)
        .where(User.id == bindparam("p_user_id"))
        .execution_options(populate_existing=True)  # counters move by Core upserts elsewhere
    )


@functools.cache
def record_export() -> Executable:
    """INSERT ... SELECT FROM users ON CONFLICT (user_id) DO UPDATE adding to the counters."""
    table = cast(Table, UserMetrics.__table__)
    source = select(
        bindparam("p_id", type_=UUID),
        User.id,
        literal_column("1", Integer),  # one more export
        bindparam("p_cost_savings", type_=Numeric(12, 2)),
        bindparam("p_days", type_=Integer),
        func.coalesce(bindparam("p_exported_at", type_=DateTime(timezone=True)), func.now()),
    ).where(User.id == bindparam("p_user_id"))
    columns = ["id", "user_id", *COUNTERS, "last_export_date"]
    statement = insert(table).from_select(columns, source)
    latest = func.greatest(table.c.last_export_date, statement.excluded.last_export_date)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.user_id],
        set_={
            **{name: table.c[name] + statement.excluded[name] for name in COUNTERS},
            "last_export_date": latest,
        },
    )
    return (
        select(UserMetrics)
        .from_statement(statement.returning(*table.c))
        .execution_options(populate_existing=True)
    )
