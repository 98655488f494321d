"""What every repository shares: the session, error translation, pages, metric counters."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import InvalidDataError, translate
from exportsathi_db.models import UserMetrics, new_id
from exportsathi_db.repositories.fastpath import driver

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def translate_errors(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Re-raise driver errors of a repository method as this package's errors."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except Exception as exc:
            error = translate(exc)
            if error is exc:
                raise
            raise error from exc

    return wrapper


class Repository:
    """Takes the caller's session; flushes when it must, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list; pass `next_cursor` back for the next page."""

    items: Sequence[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, row_id = json.loads(base64.urlsafe_b64decode(padded))
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, uuid.UUID(row_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidDataError("cursor", "is not a cursor returned by this API") from None


def check_id(field: str, value: Any) -> uuid.UUID:
    """Ids must be UUIDs: a malformed id is the caller's bug, reported before any SQL."""
    if not isinstance(value, uuid.UUID):
        raise InvalidDataError(field, f"must be a UUID; got {type(value).__name__}")
    return value


def check_limit(limit: int, *, maximum: int = 1000) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidDataError("limit", f"must be an integer between 1 and {maximum}")
    return limit


@functools.lru_cache(maxsize=16)
def _bump_sql(names: tuple[str, ...]) -> str:
    """The counters' upsert, built once per set of counters: $1 id, $2 user id, $3... deltas."""
    columns = [UserMetrics.__table__.columns[name].name for name in names]  # KeyError: no such
    deltas = [f"${n}" for n in range(3, len(names) + 3)]
    added = ", ".join(f"{name} = m.{name} + EXCLUDED.{name}" for name in columns)
    return (
        f"INSERT INTO user_metrics AS m (id, user_id, {', '.join(columns)})"
        f" VALUES ($1, $2, {', '.join(deltas)}) ON CONFLICT (user_id) DO UPDATE SET {added}"
    )


async def bump_metrics(session: AsyncSession, user_id: uuid.UUID, **deltas: Any) -> None:
    """Atomically add to a user's counters, creating their metrics row on first use."""
    names = tuple(sorted(deltas))
    raw = await driver(session)
    await raw.execute(_bump_sql(names), new_id(), user_id, *(deltas[name] for name in names))
