"""Passwords asked for whenever a new connection is opened: rotating passwords, IAM tokens.

A password provider is either a callable (sync or async) returning the password, passed as
`DatabaseConnection(..., password=...)`, or a command, `DB_PASSWORD_COMMAND`, run without a
shell, whose first line of standard output is the password. asyncpg calls it for each new
connection (its `password` argument accepts a callable), so a pool picks up a new password
as it opens or recycles connections; established connections are not affected.

What can go wrong, and what the caller sees (messages never contain the password, the
provider's output, its exception's text or the command's arguments):

- the provider raises, the command exits with a non-zero status, prints nothing, or either
  takes longer than `DB_PASSWORD_TIMEOUT`: `PasswordProviderError`, a retryable
  `DatabaseUnavailableError`. A secret store or token endpoint that is briefly down is as
  transient as the database being unreachable, and `DatabaseConnection.run` retries it;
- the command cannot be run at all (no such program, not executable) or a callable returns
  something that is not a string: `ConfigurationError`, not retryable: only a fix helps.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from exportsathi_db.config import password_command_argv
from exportsathi_db.errors import ConfigurationError, ExportSathiDBError, PasswordProviderError

if TYPE_CHECKING:
    from exportsathi_db.config import Settings

logger = logging.getLogger("exportsathi_db")

# A callable returning the password, or an awaitable of it (an `async def` works).
PasswordProvider = Callable[[], "str | Awaitable[str]"]


class _Provider:
    """The async callable handed to asyncpg: runs the provider within the timeout and turns
    every failure into a typed error that carries no secret (and no chained exception)."""

    def __init__(
        self, fetch: Callable[[], Awaitable[object]], *, what: str, timeout: float
    ) -> None:
        self._fetch, self._what, self._timeout = fetch, what, timeout

    def __repr__(self) -> str:
        return f"<password provider: {self._what}>"

    async def __call__(self) -> str:
        failure: ExportSathiDBError | None = None
        value: object = None
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._fetch()
        except ExportSathiDBError as exc:  # already typed and free of secrets
            failure = exc
        except TimeoutError:
            failure = PasswordProviderError(
                f"the password provider ({self._what}) did not answer within "
                f"DB_PASSWORD_TIMEOUT ({self._timeout:g} s): cannot open a database connection"
            )
        except Exception as exc:  # its text may hold anything, the secret included
            failure = PasswordProviderError(
                f"the password provider ({self._what}) failed ({type(exc).__name__}): cannot "
                "open a database connection"
            )
        if failure is None:
            if not isinstance(value, str):
                failure = ConfigurationError(
                    f"the password provider ({self._what}) returned a "
                    f"{type(value).__name__}, not a str"
                )
            elif not value:
                failure = PasswordProviderError(
                    f"the password provider ({self._what}) returned an empty password"
                )
            else:
                return value
        # Raised here, outside the except blocks, and cut from whatever it was raised from:
        # no __cause__ or __context__ carries the provider's exception or output.
        failure.__cause__ = failure.__context__ = None
        failure.__suppress_context__ = True
        logger.warning("%s", failure)
        raise failure


def password_source(
    settings: Settings, password: PasswordProvider | None
) -> Callable[[], Awaitable[str]] | None:
    """The provider to give asyncpg as its `password`: `password` if given, else
    DB_PASSWORD_COMMAND, else None (the URL's password is used)."""
    timeout = settings.db_password_timeout
    if password is not None:
        if not callable(password):
            raise ConfigurationError("password= must be a callable returning the password")
        name = getattr(password, "__qualname__", type(password).__name__)
        return _Provider(_calling(password), what=f"callable {name}", timeout=timeout)
    if settings.db_password_command is not None:
        argv = password_command_argv(settings.db_password_command)
        what = f"DB_PASSWORD_COMMAND {os.path.basename(argv[0])}"
        return _Provider(_running(argv, what), what=what, timeout=timeout)
    return None


def _calling(provider: PasswordProvider) -> Callable[[], Awaitable[object]]:
    async def fetch() -> object:
        if inspect.iscoroutinefunction(provider):
            return await provider()
        # A plain function may block (an HTTP call, a file): never on the event loop.
        result = await asyncio.to_thread(provider)
        if inspect.isawaitable(result):
            return await result
        return result

    return fetch


def _running(argv: list[str], what: str) -> Callable[[], Awaitable[object]]:
    async def fetch() -> object:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                # Its diagnostics go to this process's stderr, as when run by hand; never
                # into this package's messages or logs.
                stderr=None,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            kind = "not found" if isinstance(exc, FileNotFoundError) else "not executable"
            raise ConfigurationError(f"{what}: the program is {kind}") from None
        except OSError as exc:
            raise ConfigurationError(
                f"{what}: the program cannot be run ({type(exc).__name__})"
            ) from None
        try:
            output, _ = await process.communicate()
        finally:
            if process.returncode is None:  # timed out or cancelled: do not leave it running
                process.kill()
                await asyncio.shield(process.wait())
        if process.returncode != 0:
            raise PasswordProviderError(
                f"{what} exited with status {process.returncode}: cannot open a database connection"
            )
        text = _utf8(output)
        if text is None:  # decided outside an except block: no exception holds the bytes
            raise PasswordProviderError(f"{what} printed something that is not UTF-8")
        lines = text.splitlines()
        return lines[0] if lines else ""

    return fetch


def _utf8(output: bytes) -> str | None:
    try:
        return output.decode("utf-8")
    except UnicodeDecodeError:
        return None
