"""The package's exception hierarchy, and the one place driver errors are translated.

Everything this package raises on purpose derives from `ExportSathiDBError`. Driver
errors are classified by SQLSTATE and constraint name, never by message text.
"""

from __future__ import annotations

import ssl
from typing import Any

from asyncpg import exceptions as asyncpg_exc
from asyncpg.exceptions import ClientConfigurationError
from sqlalchemy import exc as sa_exc


class ExportSathiDBError(Exception):
    """Base class of every error this package raises."""

    retryable: bool = False


class ConfigurationError(ExportSathiDBError):
    """The settings cannot work (bad URL, production without a URL, ...)."""


class NotFoundError(ExportSathiDBError):
    """The row does not exist, or belongs to another user."""


class InvalidDataError(ExportSathiDBError):
    """A value breaks a rule of the schema; names the field and what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class AlreadyExistsError(ExportSathiDBError):
    """A unique rule would be broken (e.g. an email already taken, in any letter case)."""

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class ConflictError(ExportSathiDBError):
    """The operation conflicts with the current state (e.g. a referenced row is gone)."""


class ReadOnlyError(ExportSathiDBError):
    """A write was attempted in a read-only unit of work (`read_scope`, a replica)."""


class DatabaseUnavailableError(ExportSathiDBError):
    """The server cannot be reached or the connection was lost; safe to retry the unit of work."""

    retryable = True


class CommitOutcomeUnknownError(ExportSathiDBError):
    """The connection was lost (or the task cancelled) while COMMIT was in flight: the unit
    of work may or may not be committed, and no client can know which.

    Not retryable as such: retry only a unit of work that is idempotent by a key the caller
    chose (e.g. an upsert on a request id), or read back to see whether it landed.
    """


class PoolTimeoutError(DatabaseUnavailableError):
    """No pooled connection became free within `DB_POOL_TIMEOUT` (the pool is exhausted)."""


class QueryTimeoutError(ExportSathiDBError):
    """A statement ran past `statement_timeout` or was cancelled by the server."""

    retryable = True


# Friendly messages for the constraints users hit; the rest get a generic message.
_UNIQUE_MESSAGES = {
    "uq_users_lower_email": ("email", "an account with this email already exists"),
    "uq_action_plan_progress_report_id_task_id": ("task_id", "this task is already in the plan"),
    "uq_finance_analysis_report_id": ("report_id", "this report already has a finance analysis"),
    "uq_logistics_analysis_report_id": (
        "report_id",
        "this report already has a logistics analysis",
    ),
    "uq_user_metrics_user_id": ("user_id", "this user already has metrics"),
}

_CONNECTION_SQLSTATE_CLASSES = ("08", "57P01", "57P02", "57P03", "53300")


def _driver_error(error: BaseException) -> Any:
    """The asyncpg exception behind a SQLAlchemy error, if any."""
    orig = getattr(error, "orig", None)
    cause = getattr(orig, "__cause__", None)
    return cause if cause is not None else orig


def translate(error: BaseException) -> BaseException:
    """Map a SQLAlchemy/asyncpg error to this package's hierarchy (or return it unchanged)."""
    if isinstance(error, ExportSathiDBError):
        return error
    orig = getattr(error, "orig", None)
    if isinstance(orig, ExportSathiDBError):  # raised by one of our bind processors
        return orig
    for cause in (error, _driver_error(error)):  # retrying cannot help these: not retryable
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConfigurationError(
                f"TLS certificate verify failed: {cause.verify_message} (check sslmode and "
                "the trusted root certificate, e.g. PGSSLROOTCERT)"
            )
        if isinstance(cause, ClientConfigurationError):
            return ConfigurationError(f"the database connection settings cannot work: {cause}")
    if isinstance(error, sa_exc.TimeoutError):
        return PoolTimeoutError(
            "no database connection became free within DB_POOL_TIMEOUT: the pool is exhausted"
        )
    if isinstance(error, (OSError, ConnectionError)):
        return DatabaseUnavailableError(f"cannot reach the database: {type(error).__name__}")
    if isinstance(error, asyncpg_exc.DataError):  # a parameter asyncpg cannot encode
        position = str(error).split(":", 1)[0].removeprefix("invalid input for query argument ")
        return InvalidDataError(position, "has the wrong type for its column")
    if isinstance(error, asyncpg_exc.ConnectionDoesNotExistError):  # raw asyncpg (fast path)
        return DatabaseUnavailableError("the database connection was lost; retry the unit of work")
    if isinstance(error, asyncpg_exc.PostgresError):
        driver: Any = error
    elif isinstance(error, sa_exc.DBAPIError):
        driver = _driver_error(error)
    else:
        return error

    sqlstate: str = getattr(driver, "sqlstate", None) or getattr(orig, "sqlstate", None) or ""
    constraint: str = getattr(driver, "constraint_name", None) or ""
    column: str = getattr(driver, "column_name", None) or ""

    if sqlstate.startswith("28"):  # invalid_authorization_specification, invalid_password
        return ConfigurationError(
            f"the server refused the login (SQLSTATE {sqlstate}): check the user and password "
            "of DATABASE_URL and the server's pg_hba.conf"
        )
    invalidated = getattr(error, "connection_invalidated", False)
    if invalidated or sqlstate.startswith(_CONNECTION_SQLSTATE_CLASSES):
        return DatabaseUnavailableError("the database connection was lost; retry the unit of work")
    if not sqlstate and isinstance(driver, (OSError, ConnectionError)):
        return DatabaseUnavailableError("the database connection was lost; retry the unit of work")
    if sqlstate == "23505":
        field, message = _UNIQUE_MESSAGES.get(constraint, ("", "the value is already taken"))
        text = f"{field}: {message}" if field else f"{message} ({constraint})"
        return AlreadyExistsError(text, constraint=constraint or None)
    if sqlstate == "23503":
        return NotFoundError(f"a referenced row does not exist ({constraint})")
    if sqlstate == "23514":
        return InvalidDataError(constraint or "value", "violates a check rule of the schema")
    if sqlstate == "23502":
        return InvalidDataError(column or "value", "is required")
    if sqlstate in ("22001",):
        return InvalidDataError(column or "value", "is too long for its column")
    if sqlstate in ("22003",):
        return InvalidDataError(column or "value", "is out of range for its column")
    if sqlstate in ("22P05", "22021", "22P02", "22007", "22008", "22023", "2202E"):
        return InvalidDataError(column or "value", f"is not valid for its column ({sqlstate})")
    if sqlstate == "54001":  # stack_depth_limit_exceeded: e.g. absurdly nested JSON
        return InvalidDataError(column or "value", "is nested too deeply")
    if sqlstate in ("57014",):
        return QueryTimeoutError("the statement was cancelled (statement_timeout or cancel)")
    if sqlstate in ("40001", "40P01"):
        return ConflictError("the transaction conflicted with a concurrent one; retry it")
    if sqlstate == "25006":
        return ReadOnlyError("cannot write in a read-only unit of work; use session_scope()")
    return error
