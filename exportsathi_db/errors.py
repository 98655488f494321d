"""The package's exception hierarchy, and the one place driver errors are translated.

Everything this package raises on purpose derives from `ExportSathiDBError`. Driver
errors are classified by exception type, SQLSTATE and constraint name. Message text is read
only where nothing else carries the fact (TLS refused by the server, a parameter's position,
a missing database's name), and each place says why. Messages never contain the password,
the user, or values of statement parameters.
"""

from __future__ import annotations

import re
import ssl
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from asyncpg import exceptions as asyncpg_exc
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

E = TypeVar("E", bound=BaseException)
# The DBAPI-style Error of SQLAlchemy's asyncpg adapter: it wraps asyncpg's own exception.
_ADAPTER_ERROR: type[Exception] = AsyncAdapt_asyncpg_dbapi.Error


class ExportSathiDBError(Exception):
    """Base class of every error this package raises."""

    retryable: bool = False


class ConfigurationError(ExportSathiDBError):
    """The settings cannot work (bad URL, production without a URL, ...)."""


class SchemaVersionError(ConfigurationError):
    """The database's schema revision is one this version of exportsathi_db does not know
    (it was migrated by a newer, or a different, version)."""

    def __init__(self, message: str, *, revision: str) -> None:
        super().__init__(message)
        self.revision = revision


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


class TransactionConflictError(ConflictError):
    """The transaction lost a race with a concurrent one: a serialization failure (SQLSTATE
    40001) or a deadlock (40P01). The server rolled it back; running the whole unit of work
    again (`DatabaseConnection.run`) usually succeeds."""

    retryable = True

    def __init__(self, message: str, *, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ReadOnlyError(ExportSathiDBError):
    """A write was attempted in a read-only unit of work (`read_scope`, a replica)."""


class DatabaseUnavailableError(ExportSathiDBError):
    """The server cannot be reached or the connection was lost; safe to retry the unit of work."""

    retryable = True


class ServerReadOnlyError(DatabaseUnavailableError):
    """A write outside `read_scope()` was refused because the server is read-only (SQLSTATE
    25006): it is a standby, e.g. a primary demoted by a failover. The connection was closed
    and the pool's older connections are replaced; retry the unit of work."""


class ConnectionTimeoutError(DatabaseUnavailableError):
    """The server did not answer within `DB_COMMAND_TIMEOUT` (a silent network partition, a
    stalled server). The connection was closed; retry the unit of work."""


class PasswordProviderError(DatabaseUnavailableError):
    """The password provider (`DB_PASSWORD_COMMAND` or a `password=` callable) failed or timed
    out, or the server refused the password it returned (e.g. mid-rotation): no new connection
    could be opened. Retryable, like the database itself being briefly unreachable; the message
    never contains the password or the provider's output."""


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


class UnexpectedDatabaseError(ExportSathiDBError):
    """A database error no other class describes (e.g. a mistake in a SQL statement). Its
    message names the SQLSTATE and the driver's exception class, never parameter values; the
    driver's exception is its `__cause__`."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def servers(url: URL) -> list[tuple[str, int]]:
    """(host, port) of each server a URL names, read as the asyncpg dialect reads it (a socket
    directory is a host). Raises SQLAlchemy's ArgumentError for several hosts whose ports do
    not pair up."""
    asyncpg_url = url.set(drivername="postgresql+asyncpg")
    _, args = asyncpg_url.get_dialect()().create_connect_args(asyncpg_url)
    hosts: Any = args.get("host") or "localhost"
    ports: Any = args.get("port") or 5432
    if isinstance(hosts, list):  # several hosts: the dialect demands a port for each
        return list(zip(hosts, ports, strict=True))
    return [(hosts, ports)]


def location(url: URL) -> str:
    """host:port of a URL, `h1:p1,h2:p2` for several hosts, or the socket directory and
    port: never its user or password."""
    try:
        named = servers(url)
    except sa_exc.ArgumentError:  # hosts and ports that do not pair up: show them as given
        given: Any = url.query.get("host") or url.host or "localhost"
        named = [(",".join(given) if isinstance(given, tuple) else given, url.port or 5432)]
    # A host can hold a piece of the password only if the URL was never parsed by
    # config.parse_database_url (which refuses such URLs); drop it anyway.
    return ",".join(f"{str(host).rpartition('@')[2]}:{port}" for host, port in named)


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

_RESOURCE_SHORTAGES = {
    "53000": "insufficient resources",
    "53100": "disk full",
    "53200": "out of memory",
    "53400": "a configuration limit exceeded",
}

_LOST = "the database connection was lost; retry the unit of work"

# asyncpg's own wording (not the server's) of where a parameter it could not encode sits.
_ARGUMENT_POSITION = re.compile(r"query argument (\$\d+)(?: in element #(\d+))?")
# PostgreSQL's wording of 3D000 at connection time; read only to name the database.
_MISSING_DATABASE = re.compile(r'database "(.*)" does not exist')


def _wrapped(error: BaseException) -> BaseException | None:
    """The exception a SQLAlchemy DBAPIError or its asyncpg adapter's Error wraps."""
    inner = getattr(error, "orig", None)  # DBAPIError.orig; the adapter's .orig (SQLAlchemy 2.1)
    if isinstance(inner, BaseException):
        return inner
    return error.__cause__  # the adapter's Error (SQLAlchemy 2.0) is raised `from` asyncpg's


def _driver_chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it wraps, down to asyncpg's own exception: through SQLAlchemy's
    DBAPIError and its asyncpg adapter's Error only, never through an application's causes."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 4:
        seen.append(current)
        yield current
        if not isinstance(current, (sa_exc.DBAPIError, _ADAPTER_ERROR)):
            return
        current = _wrapped(current)


def _of_type(chain: list[BaseException], kind: type[E]) -> E | None:
    """The first exception of the chain that is a `kind`, or None."""
    return next((e for e in chain if isinstance(e, kind)), None)


def _driver_modules(error: BaseException) -> list[str]:
    """The asyncpg and SQLAlchemy modules the error was raised through, innermost last."""
    modules = [
        str(f.f_globals.get("__name__", "")) for f, _ in traceback.walk_tb(error.__traceback__)
    ]
    return [m for m in modules if m.startswith(("asyncpg.", "sqlalchemy."))]


def is_command_timeout(error: BaseException) -> bool:
    """True when `error`, or what it was translated from, is asyncpg's `command_timeout`
    (or a per-call timeout) expiring on an open connection: the server did not answer, and
    the connection is in a state (a cancel request pending) no one should use again."""
    seen: BaseException | None = error
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, ConnectionTimeoutError):
            return True
        if isinstance(seen, TimeoutError) and _is_command_timeout(seen):
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


def _is_command_timeout(error: TimeoutError) -> bool:
    """A TimeoutError raised by asyncpg's protocol (a query on an open connection waited
    too long), not by its connect (asyncpg.connect_utils) nor by the application."""
    modules = _driver_modules(error)
    return bool(modules) and modules[-1] == "asyncpg.protocol.protocol"


def _refused_tls(error: BaseException) -> bool:
    """True when the server answered asyncpg's SSLRequest with 'N' (it has no TLS) and the
    sslmode demands TLS, so asyncpg gave up.

    asyncpg raises a builtin ConnectionError, from its `_create_ssl_connection` (the deepest
    asyncpg frame of the traceback), for every answer but 'S': 'N', an error response (e.g.
    the postmaster could not fork) or a dropped socket. Only 'N' is a configuration problem;
    the other two may be transient. No type or attribute tells them apart, so asyncpg's own
    fixed wording for 'N' (client text, not the server's, never localised) does.
    """
    if type(error) is not ConnectionError:
        return False
    frames = [frame for frame, _ in traceback.walk_tb(error.__traceback__)]
    ours = [f for f in frames if str(f.f_globals.get("__name__", "")).startswith("asyncpg.")]
    if not ours or ours[-1].f_code.co_name != "_create_ssl_connection":
        return False
    return "rejected SSL upgrade" in str(error)


def _unencodable(error: BaseException) -> InvalidDataError:
    """asyncpg could not encode a parameter: classified by the Python error it chains."""
    found = _ARGUMENT_POSITION.search(str(error))
    field = "value"
    if found:
        field = found[1] if found[2] is None else f"{found[1]} of row #{found[2]}"
    cause = error.__cause__
    if isinstance(cause, OverflowError):
        return InvalidDataError(field, "is out of range for its column")
    if isinstance(cause, TypeError):
        return InvalidDataError(field, "has the wrong type for its column")
    return InvalidDataError(field, "is not valid for its column")


def _server_fields(driver: Any) -> tuple[str, str, str]:
    return (
        str(getattr(driver, "sqlstate", None) or ""),
        str(getattr(driver, "constraint_name", None) or ""),
        str(getattr(driver, "column_name", None) or ""),
    )


def _missing_database(driver: Any, url: URL | None, at: str) -> ConfigurationError:
    name = url.database if url is not None else None
    if not name:
        found = _MISSING_DATABASE.search(str(getattr(driver, "message", None) or driver))
        name = found[1] if found else None
    what = f'the database "{name}"' if name else "the database named in DATABASE_URL"
    create = f'CREATE DATABASE "{name}"' if name else "CREATE DATABASE"
    return ConfigurationError(
        f"{what} does not exist{at}: create it ({create}, or createdb) or fix the database "
        "name in DATABASE_URL; `python -m exportsathi_db init` creates the tables, "
        "not the database"
    )


def translate(error: BaseException, *, url: URL | None = None) -> BaseException:
    """Map a SQLAlchemy/asyncpg error to this package's hierarchy.

    Anything from asyncpg or SQLAlchemy's DBAPI layer comes back as an `ExportSathiDBError`;
    other exceptions (an application's own, a cancellation) come back unchanged. `url`, if
    given, names the server and database in the messages that need them. The caller raises
    the result `from error`, which keeps the driver's exception as the cause.
    """
    if isinstance(error, ExportSathiDBError):
        return error
    orig = getattr(error, "orig", None)
    if isinstance(orig, ExportSathiDBError):  # raised by one of our bind processors
        return orig
    chain = list(_driver_chain(error))
    at = f" at {location(url)}" if url is not None else ""

    # Retrying cannot help these: not retryable.
    if _refused_tls(error):
        return ConfigurationError(
            f"the server{at} does not support TLS (SSL) connections, but the sslmode of "
            "DATABASE_URL (or DB_SSLMODE) requires TLS: turn on ssl in the server's "
            "postgresql.conf, or use sslmode=prefer or disable if an unencrypted connection "
            "is acceptable"
        )
    verify = _of_type(chain, ssl.SSLCertVerificationError)
    if verify is not None:
        return ConfigurationError(
            f"TLS certificate verify failed: {verify.verify_message} (check sslmode and "
            "the trusted root certificate, e.g. PGSSLROOTCERT)"
        )
    settings_error = _of_type(chain, asyncpg_exc.ClientConfigurationError)
    if settings_error is not None:
        return ConfigurationError(f"the database connection settings cannot work: {settings_error}")

    if isinstance(error, sa_exc.TimeoutError):
        return PoolTimeoutError(
            "no database connection became free within DB_POOL_TIMEOUT: the pool is exhausted"
        )
    if isinstance(error, TimeoutError) and _is_command_timeout(error):
        return ConnectionTimeoutError(
            f"the database{at} did not answer within DB_COMMAND_TIMEOUT (a network partition "
            "or a stalled server); the connection is closed; retry the unit of work"
        )
    if isinstance(error, OSError) and _driver_modules(error):
        # Also ConnectionError and TimeoutError, raised while connecting. An OSError raised
        # by the application inside a unit of work (a file, its own asyncio.timeout) passes
        # through no driver frame and stays what it is.
        reason = error.strerror or type(error).__name__
        if isinstance(error, TimeoutError):
            reason = "no answer in time (TimeoutError)"
        return DatabaseUnavailableError(f"cannot reach the database{at}: {reason}")

    driver = chain[-1]
    if type(driver) is asyncpg_exc.DataError and (
        driver.__cause__ is not None or getattr(driver, "severity", None) is None
    ):  # raised by asyncpg itself, not the server: a parameter it cannot encode
        return _unencodable(driver)
    if isinstance(driver, asyncpg_exc.TargetServerAttributeNotMatched):
        return DatabaseUnavailableError(
            f"no server of the database URL{at} is what target_session_attrs asks for (e.g. "
            "none accepts writes yet: a failover in progress); retry the unit of work"
        )
    if isinstance(driver, asyncpg_exc.InternalClientError):  # e.g. "cannot switch to state 12"
        return DatabaseUnavailableError(
            f"the database connection broke off in an unexpected state{at} "
            f"({type(driver).__name__}); retry the unit of work"
        )
    if isinstance(driver, asyncpg_exc.ConnectionDoesNotExistError):
        return DatabaseUnavailableError(_LOST)

    sqlstate, constraint, column = _server_fields(driver)
    if not sqlstate and len(chain) > 1:
        sqlstate = _server_fields(chain[1])[0]
    if sqlstate.startswith("28"):  # invalid_authorization_specification, invalid_password
        return ConfigurationError(
            f"the server{at} refused the login (SQLSTATE {sqlstate}): check the user and "
            "password of DATABASE_URL and the server's pg_hba.conf"
        )
    if sqlstate == "3D000":  # invalid_catalog_name
        return _missing_database(driver, url, at)
    if sqlstate == "53300":  # too_many_connections
        return DatabaseUnavailableError(
            f"the server{at} has no free connection slots (max_connections reached, SQLSTATE "
            "53300): lower DB_POOL_SIZE and DB_MAX_OVERFLOW so that all processes together "
            "stay below max_connections, or put PgBouncer in front; retry later"
        )
    if sqlstate.startswith("53"):  # insufficient_resources and its kin
        shortage = _RESOURCE_SHORTAGES.get(sqlstate, "insufficient resources")
        return DatabaseUnavailableError(
            f"the server{at} is short of resources ({shortage}, SQLSTATE {sqlstate}); retry later"
        )
    if sqlstate == "57P03":  # cannot_connect_now
        return DatabaseUnavailableError(
            f"the server{at} is not accepting connections yet (starting up, shutting down or "
            "in recovery, SQLSTATE 57P03); retry later"
        )
    invalidated = getattr(error, "connection_invalidated", False)
    if invalidated or sqlstate.startswith(("08", "57P01", "57P02")):
        return DatabaseUnavailableError(_LOST)
    if not sqlstate and driver is not error and isinstance(driver, OSError):
        return DatabaseUnavailableError(_LOST)  # a socket error the driver layer wrapped
    if type(driver) is asyncpg_exc.InterfaceError and _of_type(chain, sa_exc.DBAPIError) is None:
        # Raw asyncpg (the repositories' fast path), or only wrapped by the adapter: e.g.
        # "connection is closed". Wrapped in a DBAPIError, SQLAlchemy has looked at the
        # connection itself and set connection_invalidated, which is checked above; so there
        # a plain InterfaceError is a misuse (e.g. "another operation is in progress").
        return DatabaseUnavailableError(
            f"the database connection is closed or unusable (InterfaceError){at}; "
            "retry the unit of work"
        )
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
        what = "a serialization failure" if sqlstate == "40001" else "a deadlock"
        return TransactionConflictError(
            f"the transaction conflicted with a concurrent one ({what}, SQLSTATE {sqlstate}) "
            "and was rolled back; retry the unit of work",
            sqlstate=sqlstate,
        )
    if sqlstate == "25006":
        return ReadOnlyError("cannot write in a read-only unit of work; use session_scope()")

    driver_layer = (
        sa_exc.DBAPIError,
        _ADAPTER_ERROR,
        asyncpg_exc.PostgresError,
        asyncpg_exc.InterfaceError,
    )
    if isinstance(error, driver_layer):
        named = f"SQLSTATE {sqlstate}" if sqlstate else "no SQLSTATE"
        return UnexpectedDatabaseError(
            f"the database reported an error{at} ({named}, {type(driver).__name__})",
            sqlstate=sqlstate or None,
        )
    return error
