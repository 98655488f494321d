"""The raw asyncpg baseline's statements: the very SQL text the repositories send, so the
server does identical work (same plans, same rows, same round trips) and what the benchmark
compares is only what each client spends around them. tests/test_benchmarks_smoke.py checks
that both send the same statements, BEGIN, COMMIT and ROLLBACK included, per scenario.

Importing them (instead of copying) keeps the baseline honest when a repository's SQL
changes: the baseline follows, and only the Python around the statements differs.
"""

from dataclasses import fields

from exportsathi_db.repositories import action_plan, chat_sql, metrics, reports, users
from exportsathi_db.views import UserMetricsView

LOGIN = users.LOGIN_BY_EMAIL  # $1 email: UPDATE … RETURNING, one statement
GET_BY_EMAIL = users.BY_EMAIL  # the old two-statement login: this, then RECORD_LOGIN
RECORD_LOGIN = users.LOGIN  # $1 user id
CREATE_USER = users.INSERT  # $1 id, $2… users.CREATED
GET_USER = users.BY_ID  # $1 user id
GET_METRICS = metrics.GET  # $1 user id
LIST_REPORTS = reports.page_sql((), False)  # $1 user id, $2 limit + 1
CREATE_REPORT = reports.INSERT  # $1 id, $2 user, $3 metrics row id, $4… reports.SETTABLE
REPORT_SETTABLE = tuple(reports.SETTABLE)
GET_FULL = reports.FULL  # $1 report, $2 user
CREATE_CHAT = chat_sql.CREATE_SESSION  # $1 id, $2 user, $3 report, $4 context, $5 ttl
ADD_MESSAGE = chat_sql.ADD_MESSAGE  # $1 session, $2 user, $3 id, $4 role, $5 content, $6 sources
ADD_MESSAGES = chat_sql.ADD_MESSAGES  # $1 session, $2 user, $3… parallel arrays
HISTORY = chat_sql.HISTORY  # $1 session, $2 user, $3 limit
SAVE_PLAN = action_plan.SAVE  # $1 report, $2 user, $3 ids, $4… one array per task field
PLAN_FIELDS = (*action_plan.REQUIRED, *action_plan.OPTIONAL)

# Where a value sits in a row of GET_METRICS (its columns are computed, so unnamed).
METRICS_REPORTS_GENERATED = [f.name for f in fields(UserMetricsView)].index("reports_generated")
