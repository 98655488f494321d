"""ChatRepository: a user's Q&A sessions (expiring after a sliding window) and their messages."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import ChatSession, MessageRole, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.repositories import chat_sql as sql
from exportsathi_db.repositories import executor
from exportsathi_db.repositories.base import Repository, check_id, check_limit
from exportsathi_db.validation import check_aware, check_choice, check_json, check_text
from exportsathi_db.views import ChatMessageView, ChatSessionView

DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=36525)  # 100 years; ttl=None is "never expires"
_MESSAGE_KEYS = frozenset({"role", "content", "sources"})
_ROLES = tuple(role.value for role in MessageRole)


def _gone(session_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"chat session {session_id} not found (or expired)")


def _owned(session_id: uuid.UUID, user_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """The ($1, $2) of the statements scoped to the user's session, both checked ids."""
    return check_id("session_id", session_id), check_id("user_id", user_id)


def _check_ttl(ttl: timedelta | None) -> timedelta | None:
    if ttl is not None and (not isinstance(ttl, timedelta) or not timedelta(0) < ttl <= MAX_TTL):
        raise InvalidDataError(
            "ttl", "must be a positive timedelta of at most 100 years, or None (never expires)"
        )
    return ttl


def _check_message(index: int | None, message: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """One message as (role, content, sources as JSON text), checked by the rules `validated`
    applies to its columns (`validation`'s), called directly: a batch of 1,000 must stay
    close to COPY speed, and a field is named by its place in the batch."""
    if not isinstance(message, Mapping):
        raise InvalidDataError(f"messages[{index}]", "must be a mapping with role and content")
    if not _MESSAGE_KEYS.issuperset(message) or "role" not in message or "content" not in message:
        unknown = ", ".join(sorted(map(str, set(message) - _MESSAGE_KEYS)))
        raise InvalidDataError(
            _field(index, unknown or "role, content"),
            "a message has role, content and optional sources, nothing else",
        )
    role, content, sources = message["role"], message["content"], message.get("sources")
    check_choice(_field(index, "role"), role, _ROLES)
    check_text(_field(index, "content"), content, nullable=False)
    if sources is None:
        return role, content, None
    if not isinstance(sources, list):
        raise InvalidDataError(_field(index, "sources"), "must be a JSON array (list) of citations")
    check_json(_field(index, "sources"), sources)
    return role, content, json.dumps(sources)


def _field(index: int | None, name: str) -> str:
    return name if index is None else f"messages[{index}].{name}"


class ChatRepository(Repository):
    """Sessions are owner-scoped; an expired session behaves exactly like a missing one."""

    async def create_session(
        self,
        *,
        user_id: uuid.UUID,
        report_id: uuid.UUID | None = None,
        context_data: dict[str, Any] | None = None,
        ttl: timedelta | None = DEFAULT_TTL,
    ) -> ChatSessionView:
        """Open a session expiring `ttl` after its last activity (None: never); 1 statement.

        The owner (and the report's ownership) is checked by the INSERT ... SELECT itself.
        """
        check_id("user_id", user_id)
        if report_id is not None:
            check_id("report_id", report_id)
        _check_ttl(ttl)
        validated(ChatSession, {"context_data": context_data})  # a JSON object, or None
        context = None if context_data is None else json.dumps(context_data)
        row = await executor.fetchrow(
            self.session, sql.CREATE_SESSION, new_id(), user_id, report_id, context, ttl
        )
        if row is None:
            what = "user" if report_id is None else "report"
            raise NotFoundError(f"{what} {report_id or user_id} not found")
        return ChatSessionView(*row)

    async def get_session_or_none(
        self, session_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> ChatSessionView | None:
        """The user's unexpired session, or None (1 statement)."""
        row = await executor.fetchrow(self.session, sql.GET_SESSION, *_owned(session_id, user_id))
        return None if row is None else ChatSessionView(*row)

    async def get_session(self, session_id: uuid.UUID, *, user_id: uuid.UUID) -> ChatSessionView:
        """The user's unexpired session, or `NotFoundError`."""
        found = await self.get_session_or_none(session_id, user_id=user_id)
        if found is None:
            raise _gone(session_id)
        return found

    async def add_message(
        self,
        session_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        role: str,
        content: str,
        sources: list[Any] | None = None,
    ) -> ChatMessageView:
        """Append one message and slide the session's expiry forward (1 statement)."""
        owned = _owned(session_id, user_id)
        checked = _check_message(None, {"role": role, "content": content, "sources": sources})
        row = await executor.fetchrow(self.session, sql.ADD_MESSAGE, *owned, new_id(), *checked)
        if row is None:
            raise _gone(session_id)
        return ChatMessageView(*row)

    async def add_messages(
        self,
        session_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        messages: Sequence[Mapping[str, Any]],
    ) -> list[uuid.UUID]:
        """Append many messages in input order with one statement, whatever their number.

        Returns the new messages' ids in input order (read them back with `history`): not
        loading a thousand rows back keeps a batch close to COPY speed.
        """
        owned = _owned(session_id, user_id)
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise InvalidDataError("messages", "must be a sequence of message mappings")
        rows = [_check_message(i, message) for i, message in enumerate(messages)]
        if not rows:
            await self.get_session(session_id, user_id=user_id)
            return []
        ids = [new_id() for _ in rows]  # time-ordered: (created_at, id) keeps input order
        roles, contents, sources = (list(column) for column in zip(*rows, strict=True))
        added = await executor.execute(
            self.session, sql.ADD_MESSAGES, *owned, ids, roles, contents, sources
        )
        if added == 0:  # the session is not the user's live one
            raise _gone(session_id)
        return ids

    async def history(
        self,
        session_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        limit: int = 50,
        before: uuid.UUID | None = None,
    ) -> list[ChatMessageView]:
        """The latest `limit` messages (older than message `before`, if given), oldest first."""
        owned = _owned(session_id, user_id)
        check_limit(limit)
        if before is None:
            rows = await executor.fetch(self.session, sql.HISTORY, *owned, limit)
        else:
            check_id("before", before)
            rows = await executor.fetch(self.session, sql.HISTORY_BEFORE, *owned, limit, before)
        if not rows:
            raise _gone(session_id)
        anchor, first_id = rows[0][0], rows[0][1]
        if anchor is None:
            raise NotFoundError(f"message {before} not found in chat session {session_id}")
        if first_id is None:  # the LEFT JOIN's one empty row: no (older) messages
            return []
        return [ChatMessageView(*row[1:]) for row in reversed(rows)]

    async def list_sessions(self, user_id: uuid.UUID, *, limit: int = 20) -> list[ChatSessionView]:
        """The user's unexpired sessions, most recent activity first (1 statement)."""
        check_id("user_id", user_id)
        check_limit(limit)
        rows = await executor.fetch(self.session, sql.LIST_SESSIONS, user_id, limit)
        return [ChatSessionView(*row) for row in rows]

    async def purge_expired(self, *, now: datetime | None = None) -> int:
        """Delete every session expired at `now` (None: the transaction's time), their
        messages by cascade; returns how many sessions (1 statement). A maintenance job."""
        check_aware("now", now)
        return await executor.execute(self.session, sql.PURGE_EXPIRED, now)

    async def delete_session(self, session_id: uuid.UUID, *, user_id: uuid.UUID) -> None:
        """Delete the user's live session and its messages; an expired one is already gone."""
        deleted = await executor.execute(
            self.session, sql.DELETE_SESSION, *_owned(session_id, user_id)
        )
        if deleted == 0:
            raise _gone(session_id)
