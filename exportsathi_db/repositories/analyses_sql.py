"""AnalysisRepository's statements: plain PostgreSQL with `$n` parameters, run through
`executor`. JSONB parameters are JSON text (NULL: SQL NULL), cast to jsonb in the statement.

The metrics statements live with the counters, in `metrics.py`.
"""

from __future__ import annotations

from exportsathi_db.views import FinanceAnalysisView, LogisticsAnalysisView
from exportsathi_db.views.base import column_list

FINANCE_PARTS = (
    "working_capital_data",
    "pre_shipment_credit_data",
    "rodtep_benefit_data",
    "gst_refund_data",
    "cash_flow_timeline",
    "financing_options",
)
LOGISTICS_PARTS = (
    "lcl_fcl_comparison",
    "rms_probability_data",
    "route_analysis",
    "freight_estimate",
    "insurance_recommendation",
)


def _save(table: str, parts: tuple[str, ...], view: type[object]) -> str:
    """INSERT ... SELECT FROM reports (the ownership check) ON CONFLICT (report_id) DO UPDATE.

    One atomic statement: concurrent saves of a report leave one row, the last write's.
    Binds $1 id, $2 report id, $3 user id, then each part (JSON text) in `parts` order.
    """
    values = ", ".join(f"${n}::text::jsonb" for n in range(4, 4 + len(parts)))
    replaced = ", ".join(f"{part} = EXCLUDED.{part}" for part in parts)
    return f"""INSERT INTO {table} (id, user_id, report_id, {", ".join(parts)})
SELECT $1::uuid, r.user_id, r.id, {values} FROM reports r WHERE r.id = $2 AND r.user_id = $3
ON CONFLICT (report_id) DO UPDATE SET {replaced}
RETURNING {column_list(view)}"""


def _get(table: str, view: type[object]) -> str:
    """The report's analysis when the report is the user's: $1 report id, $2 user id."""
    return f"SELECT {column_list(view)} FROM {table} WHERE report_id = $1 AND user_id = $2"


SAVE_FINANCE = _save("finance_analysis", FINANCE_PARTS, FinanceAnalysisView)
GET_FINANCE = _get("finance_analysis", FinanceAnalysisView)
SAVE_LOGISTICS = _save("logistics_analysis", LOGISTICS_PARTS, LogisticsAnalysisView)
GET_LOGISTICS = _get("logistics_analysis", LogisticsAnalysisView)
