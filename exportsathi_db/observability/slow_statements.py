"""The slow-statement log (DB_SLOW_STATEMENT_MS): each statement that took at least that long,
logged at WARNING on the `exportsathi_db.slow_statements` logger with its duration and SQL
text, never its parameter values (the text has `$n` placeholders; values are always bound).

Two public hooks see every statement between them: SQLAlchemy's cursor events, for what goes
through SQLAlchemy, and asyncpg's query logger (`Connection.add_query_logger`), for what is
sent straight to the driver (the executor's later statements, BEGIN, COMMIT, ROLLBACK). They
are installed only when the setting is set; unset (the default), nothing listens.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext

logger = logging.getLogger("exportsathi_db.slow_statements")

# The logged SQL text: whitespace collapsed to one line, at most this many characters.
MAX_STATEMENT_CHARS = 1000
# Connection.info key: when the statement now running through SQLAlchemy started.
_STARTED = "exportsathi_db.slow_statements.started"


def log_slow_statements(engine: Engine, threshold_ms: int) -> None:
    """Log the statements of `engine` (its sync Engine) that take `threshold_ms` or longer."""
    threshold = threshold_ms / 1000

    def started(conn: Any, *_args: Any) -> None:
        conn.info[_STARTED] = time.perf_counter()

    def finished(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        elapsed = time.perf_counter() - conn.info.pop(_STARTED, time.perf_counter())
        if elapsed >= threshold:
            report(statement, elapsed, failed=False)

    def failed(context: ExceptionContext) -> None:
        conn = context.connection
        if conn is None or context.statement is None or _STARTED not in conn.info:
            return  # not a statement (e.g. a failed connect)
        elapsed = time.perf_counter() - conn.info.pop(_STARTED)
        if elapsed >= threshold:
            report(context.statement, elapsed, failed=True)

    def logged_by_driver(query: Any) -> None:  # an asyncpg LoggedQuery; its args are ignored
        if query.elapsed >= threshold:
            report(query.query, query.elapsed, failed=query.exception is not None)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(logged_by_driver)

    event.listen(engine, "before_cursor_execute", started)
    event.listen(engine, "after_cursor_execute", finished)
    event.listen(engine, "handle_error", failed)
    event.listen(engine, "connect", on_connect)


def report(statement: str, elapsed: float, *, failed: bool) -> None:
    text = re.sub(r"\s+", " ", statement).strip()
    if len(text) > MAX_STATEMENT_CHARS:
        text = text[: MAX_STATEMENT_CHARS - 1] + "…"
    duration_ms = round(elapsed * 1000, 1)
    logger.warning(
        "slow statement%s: %.1f ms: %s",
        " (failed)" if failed else "",
        duration_ms,
        text,
        extra={"duration_ms": duration_ms, "statement": text},
    )
