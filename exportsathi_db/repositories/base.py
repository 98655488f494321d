"""What every repository shares: the session, pages and keyset cursors, id and limit checks."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import InvalidDataError

T = TypeVar("T")


class Repository:
    """Takes the caller's session and runs its statements in the caller's transaction
    (through `executor`); never commits: the unit of work does."""

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

