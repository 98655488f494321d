"""When `DatabaseConnection.run` runs a unit of work again, and how long it waits first.

Retried (each time in a fresh unit of work, on a fresh or pooled connection):

- `DatabaseUnavailableError`: the connection was lost before COMMIT was sent, the server
  did not answer within DB_COMMAND_TIMEOUT (`ConnectionTimeoutError`), it is a standby
  (`ServerReadOnlyError`, a demoted primary), it is starting, shutting down, out of
  connection slots or resources, or the password provider failed (`PasswordProviderError`);
- `TransactionConflictError`: a serialization failure (40001) or a deadlock (40P01);
- `CommitOutcomeUnknownError` only when the caller says the unit is idempotent.

Never retried: everything else, raised at once. That includes `PoolTimeoutError` (the pool
is exhausted: waiting DB_POOL_TIMEOUT again only adds load) and `QueryTimeoutError` (the
statement is too slow for statement_timeout: it would time out again), application errors,
and cancellation.
"""

from __future__ import annotations

import random

from exportsathi_db.errors import (
    CommitOutcomeUnknownError,
    DatabaseUnavailableError,
    PoolTimeoutError,
    TransactionConflictError,
)


def should_retry(error: BaseException, *, idempotent: bool) -> bool:
    """True when running the unit of work again may succeed and cannot do harm."""
    if isinstance(error, CommitOutcomeUnknownError):
        return idempotent
    if isinstance(error, PoolTimeoutError):
        return False
    return isinstance(error, (DatabaseUnavailableError, TransactionConflictError))


def backoff_delay(retry: int, *, base: float, cap: float) -> float:
    """Seconds to wait before retry number `retry` (1, 2, ...): exponential backoff with full
    jitter, uniform in [0, min(cap, base * 2 ** (retry - 1))], so clients that failed together
    do not come back together."""
    ceiling = min(cap, base * 2 ** min(retry - 1, 32))
    return random.uniform(0.0, ceiling)  # noqa: S311 (jitter, not cryptography)
