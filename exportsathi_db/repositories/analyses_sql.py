"""AnalysisRepository's statements: fast-path SQL with `$n` parameters, built once.

They run on the session's asyncpg connection and their rows are adopted as ORM objects
(see fastpath.py). JSONB parameters are JSON text (`json_param`), NULL for None.
"""

from __future__ import annotations

from exportsathi_db.models import FinanceAnalysis, LogisticsAnalysis, UserMetrics
from exportsathi_db.repositories.fastpath import columns

Model = type[FinanceAnalysis | LogisticsAnalysis]

PARTS: dict[Model, tuple[str, ...]] = {
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


def _save(model: Model) -> str:
    """INSERT ... SELECT FROM reports (the ownership check) ON CONFLICT (report_id) DO UPDATE.

    One atomic statement: concurrent saves of a report leave one row, the last write's.
    Binds $1 id, $2 report id, $3 user id, then each part in PARTS order.
    """
    parts = PARTS[model]
    values = ", ".join(f"${n}::jsonb" for n in range(4, 4 + len(parts)))
    replaced = ", ".join(f"{part} = EXCLUDED.{part}" for part in parts)
    return f"""INSERT INTO {model.__tablename__} (id, user_id, report_id, {", ".join(parts)})
SELECT $1::uuid, r.user_id, r.id, {values} FROM reports r WHERE r.id = $2 AND r.user_id = $3
ON CONFLICT (report_id) DO UPDATE SET {replaced}
RETURNING {columns(model)}"""


def _get(model: Model) -> str:
    """The report's analysis when the report is the user's: $1 report id, $2 user id."""
    table = model.__tablename__
    return f"SELECT {columns(model)} FROM {table} WHERE report_id = $1 AND user_id = $2"


SAVE = {model: _save(model) for model in PARTS}
GET = {model: _get(model) for model in PARTS}

# The user (no row: no user) LEFT JOIN their metrics (NULL id: no event yet). $1 user id.
GET_METRICS = f"""SELECT u.id AS user_exists, {columns(UserMetrics, "m")}
FROM users u LEFT JOIN user_metrics m ON m.user_id = u.id WHERE u.id = $1"""

# INSERT ... SELECT FROM users (no row: no user) ON CONFLICT (user_id) adding to the counters.
# $1 id, $2 user id, $3 cost savings, $4 days, $5 exported at (NULL: the transaction's time).
RECORD_EXPORT = f"""INSERT INTO user_metrics AS m
    (id, user_id, {", ".join(COUNTERS)}, last_export_date)
SELECT $1::uuid, u.id, 1, $3::numeric(12, 2), $4::integer, coalesce($5::timestamptz, now())
FROM users u WHERE u.id = $2
ON CONFLICT (user_id) DO UPDATE SET
    {", ".join(f"{name} = m.{name} + EXCLUDED.{name}" for name in COUNTERS)},
    last_export_date = greatest(m.last_export_date, EXCLUDED.last_export_date)
RETURNING {columns(UserMetrics)}"""
