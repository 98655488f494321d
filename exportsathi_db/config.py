"""Settings from the environment and `.env` (pydantic-settings), and the database URL rules."""

from __future__ import annotations

import shlex
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from exportsathi_db.errors import ConfigurationError, servers

SSLMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_POSTGRES_SCHEMES = (
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgresql+psycopg2",
    "postgresql+psycopg",
)


class Settings(BaseSettings):
    """Every knob of the package; environment variable names are the field names in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    database_url: SecretStr | None = None
    database_read_url: SecretStr | None = None
    environment: Literal["development", "test", "production"] = "development"
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(20, ge=0)
    db_pool_timeout: float = Field(30.0, gt=0)
    db_pool_recycle: int = Field(3600, ge=-1)
    db_echo: bool = False
    # Statement parameters (password hashes among them) stay out of logs unless asked for.
    db_log_parameters: bool = False
    db_connect_timeout: float = Field(5.0, gt=0)
    # High availability (docs/unit-of-work.md). asyncpg's command_timeout: the longest wait, in
    # seconds, for the server's answer to any statement (BEGIN and COMMIT too), so a silent
    # network partition fails as ConnectionTimeoutError instead of hanging. It must stay above
    # DB_STATEMENT_TIMEOUT_MS and DB_MIGRATION_STATEMENT_TIMEOUT_MS, so the server, not the
    # client, stops a slow statement with a clear error. None: no limit.
    db_command_timeout: float | None = Field(90.0, gt=0)
    # How long the rollback that ends a failed unit of work may take before its connection is
    # closed instead.
    db_cleanup_timeout: float = Field(5.0, gt=0)
    # The server's TCP keepalives on this package's connections (tcp_keepalives_idle, seconds;
    # then a probe every idle/5 s, 5 of them): the server ends the session of a client that
    # vanished behind a partition within about twice this, freeing its slot and locks, instead
    # of after the operating system's ~2 h. Not set with DB_PGBOUNCER (configure PgBouncer's
    # own). None: the server's defaults.
    db_server_keepalive_idle: int | None = Field(60, ge=1)
    # DatabaseConnection.run(): exponential backoff with full jitter between attempts, seconds.
    db_retry_backoff_base: float = Field(0.1, gt=0)
    db_retry_backoff_cap: float = Field(2.0, gt=0)
    # A program (and arguments, split like a shell would, but run without one) that prints the
    # database password on its first stdout line; run for every new connection (rotating
    # passwords, IAM tokens). It must finish within DB_PASSWORD_TIMEOUT seconds.
    db_password_command: str | None = None
    db_password_timeout: float = Field(3.0, gt=0)
    db_sslmode: SSLMode | None = None
    db_application_name: str = "exportsathi_db"
    db_statement_timeout_ms: int | None = Field(None, ge=0)
    db_idle_in_transaction_timeout_ms: int | None = Field(None, ge=0)
    db_pgbouncer: bool = False
    # Log (WARNING, logger `exportsathi_db.slow_statements`) every statement that takes at
    # least this many milliseconds, with its SQL text and never its parameter values.
    # None: no log, and nothing measured.
    db_slow_statement_ms: int | None = Field(None, ge=0)
    # Migrations (init, drop, the alembic command line). A DDL statement waiting for its table
    # lock blocks every query queued behind it, so it waits at most this long (0: no limit),
    # then the whole migration transaction is retried, up to DB_MIGRATION_LOCK_RETRIES times.
    # Below the server's deadlock_timeout (1 s by default): in a lock cycle with an app
    # transaction, the migration gives way, not the app. A statement holding its lock may run
    # for DB_MIGRATION_STATEMENT_TIMEOUT_MS (0: no limit).
    db_migration_lock_timeout_ms: int = Field(800, ge=0)
    db_migration_statement_timeout_ms: int = Field(15_000, ge=0)
    db_migration_lock_retries: int = Field(5, ge=0, le=20)

    @model_validator(mode="after")
    def _pgbouncer_cannot_pass_timeouts(self) -> Settings:
        """Refused when settings load, so bad configuration fails at startup."""
        timeouts = (self.db_statement_timeout_ms, self.db_idle_in_transaction_timeout_ms)
        if self.db_pgbouncer and any(t is not None for t in timeouts):
            raise ValueError(
                "DB_STATEMENT_TIMEOUT_MS / DB_IDLE_IN_TRANSACTION_TIMEOUT_MS cannot pass "
                "through PgBouncer; set them on the database role instead "
                "(ALTER ROLE ... SET statement_timeout = ...)"
            )
        return self

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _userinfo_is_encoded(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        """Refuse, when the settings load, a URL whose password would be misread (and shown).
        Raises ConfigurationError itself (pydantic passes it through), not a ValidationError."""
        if value is not None:
            check_userinfo(value.get_secret_value(), setting=str(info.field_name).upper())
        return value

    @field_validator("db_password_command")
    @classmethod
    def _command_parses(cls, value: str | None) -> str | None:
        if value is not None:
            password_command_argv(value)
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (never at import time)."""
    return Settings()


def password_command_argv(command: str) -> list[str]:
    """DB_PASSWORD_COMMAND split into a program and its arguments (shell quoting rules, no
    shell). Raises ConfigurationError, which never shows the command, if it cannot be split or
    is empty."""
    try:
        argv = shlex.split(command)
    except ValueError:
        raise ConfigurationError(
            "DB_PASSWORD_COMMAND cannot be split into a program and its arguments "
            "(an unclosed quote?)"
        ) from None
    if not argv:
        raise ConfigurationError("DB_PASSWORD_COMMAND is empty")
    return argv


def check_userinfo(raw: str, *, setting: str = "DATABASE_URL") -> None:
    """Refuse a URL with a raw `@` beyond the one that ends the user and password.

    URL parsers split `user:password@host` at the first `@` (SQLAlchemy) or the last one
    (others): with an `@` inside the password, a piece of the password becomes the host (or
    the user), and every message naming the server would print it. So a second raw `@`
    anywhere is refused; the message shows no part of the URL.
    """
    if raw.count("@") > 1:
        raise ConfigurationError(
            f"{setting} has more than one '@': special characters in the user or password "
            "must be percent-encoded ('@' as %40, ':' as %3A, '/' as %2F), e.g. with "
            'urllib.parse.quote(password, safe="")'
        )


def parse_database_url(raw: str | URL) -> tuple[URL, str | None]:
    """Normalise a PostgreSQL URL to the asyncpg driver; split off `sslmode` for asyncpg's `ssl`.

    Raises ConfigurationError for anything that is not a PostgreSQL URL, or whose user or
    password is not percent-encoded; the message never contains any part of the user or
    password.
    """
    if isinstance(raw, str):
        check_userinfo(raw)
    elif "@" in str(raw.host or ""):  # a URL object built from a misread string
        raise ConfigurationError(
            "the database URL's host contains '@': special characters in the user or "
            "password must be percent-encoded ('@' as %40), e.g. with "
            'urllib.parse.quote(password, safe="")'
        )
    try:
        url = make_url(raw) if isinstance(raw, str) else raw
    except (ArgumentError, ValueError):
        raise ConfigurationError(
            "DATABASE_URL is not a valid URL; expected postgresql://user:password@host:port/dbname"
        ) from None
    if url.drivername not in _POSTGRES_SCHEMES:
        raise ConfigurationError(
            f"DATABASE_URL must be a PostgreSQL URL (postgresql://...), not {url.drivername}://"
        )
    query = dict(url.query)
    sslmode = query.pop("sslmode", None)
    if isinstance(sslmode, tuple):
        sslmode = sslmode[-1]
    if sslmode is not None and sslmode not in _SSL_MODES:
        raise ConfigurationError(f"sslmode must be one of {', '.join(_SSL_MODES)}")
    if not url.database:
        raise ConfigurationError("DATABASE_URL names no database (…/dbname at the end)")
    url = url.set(drivername="postgresql+asyncpg", query=query)
    try:
        servers(url)
    except ArgumentError as exc:
        reason = str(exc) if url.password is None or url.password not in str(exc) else ""
        raise ConfigurationError(
            f"DATABASE_URL's hosts and ports cannot be read ({reason or 'invalid'}): write "
            "several hosts as ?host=h1:5432&host=h2:5432 or as ?host=h1,h2&port=5432,5432"
        ) from None
    return url, sslmode
