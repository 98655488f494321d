"""ChatRepository: a user's Q&A sessions (expiring after a sliding window) and their messages."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import ChatMessage, ChatSession, MessageRole, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.repositories import chat_sql as sql
from exportsathi_db.repositories.base import Repository, check_limit, translate_errors
from exportsathi_db.repositories.fastpath import adopt, adopt_all, driver
from exportsathi_db.validation import check_aware, check_text

DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=36525)  # 100 years; ttl=None is "never expires"
_MESSAGE_KEYS = frozenset({"role", "content", "sources"})
_ROLES = frozenset(role.value for role in MessageRole)


def _gone(session_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"chat session {session_id} not found (or expired)")


def _check_ttl(ttl: timedelta | None) -> timedelta | None:
    if ttl is not None and (not isinstance(ttl, timedelta) or not timedelta(0) < ttl <= MAX_TTL):
        raise InvalidDataError(
            "ttl", "must be a positive timedelta of at most 100 years, or None (never expires)"
        )
    return ttl


def _check_message(index: int | None, message: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """One message as (role, content, sources as JSON text), checked like its columns are.

    Lean on purpose (a batch of 1,000 must stay close to COPY speed): the column rules of
    `validated`, with the sources encoded once, for both the check and the bind.
    """
    if not isinstance(message, Mapping):
        raise InvalidDataError(f"messages[{index}]", "must be a mapping with role and content")
    if not _MESSAGE_KEYS.issuperset(message) or "role" not in message or "content" not in message:
        unknown = ", ".join(sorted(map(str, set(message) - _MESSAGE_KEYS)))
        raise InvalidDataError(
            _field(index, unknown or "role, content"),
            "a message has role, content and optional sources, nothing else",
        )
    role, content, sources = message["role"], message["content"], message.get("sources")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidDataError(_field(index, "role"), f"must be user or assistant; got {role!r}")
    check_text(_field(index, "content"), content, nullable=False)
    if sources is None:
        return role, content, None
    if not isinstance(sources, list):
        raise InvalidDataError(_field(index, "sources"), "must be a JSON array (list) of citations")
    try:
        encoded = json.dumps(sources, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = f"must be JSON-serialisable ({type(exc).__name__})"
        raise InvalidDataError(_field(index, "sources"), reason) from None
    if "\\u0000" in encoded:
        raise InvalidDataError(_field(index, "sources"), "must not contain NUL characters")
    return role, content, encoded


def _field(index: int | None, name: str) -> str:
    return name if index is None else f"messages[{index}].{name}"


class ChatRepository(Repository):
    """Sessions are owner-scoped; an expired session behaves exactly like a missing one."""

    @translate_errors
    async def create_session(
        self,
        *,
        user_id: uuid.UUID,
        report_id: uuid.UUID | None = None,
        context_data: dict[str, Any] | None = None,
        ttl: timedelta | None = DEFAULT_TTL,
    ) -> ChatSession:
        """Open a session expiring `ttl` after its last activity (None: never).

        The owner (and the report's ownership) is checked by the INSERT ... SELECT itself.
        """
        _check_ttl(ttl)
        if context_data is not None and not isinstance(context_data, dict):
            raise InvalidDataError("context_data", "must be a JSON object (dict)")
        validated(ChatSession, {"context_data": context_data})
        params = {
            "p_id": new_id(),
            "p_user_id": user_id,
            "p_report_id": report_id,
            "p_context_data": context_data,
            "p_ttl": ttl,
        }
        statement = sql.create_session(with_report=report_id is not None)
        created: ChatSession | None = (await self.session.scalars(statement, params)).one_or_none()
        if created is None:
            what = "user" if report_id is None else "report"
            raise NotFoundError(f"{what} {report_id or user_id} not found")
        return created

    @translate_errors
    async def get_session_or_none(
        self, session_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> ChatSession | None:
        """The user's unexpired session, or None; a copy already loaded is refreshed in place."""
        row = await (await driver(self.session)).fetchrow(sql.GET_SESSION, session_id, user_id)
        return None if row is None else adopt(self.session, ChatSession, row)

    async def get_session(self, session_id: uuid.UUID, *, user_id: uuid.UUID) -> ChatSession:
        """The user's unexpired session, or `NotFoundError`."""
        found = await self.get_session_or_none(session_id, user_id=user_id)
        if found is None:
            raise _gone(session_id)
        return found

    @translate_errors
    async def add_message(
        self,
        session_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        role: str,
        content: str,
        sources: list[Any] | None = None,
    ) -> ChatMessage:
        """Append one message and slide the session's expiry forward (one statement).

        A ChatSession loaded earlier keeps its old `last_activity` until `get_session` re-reads it.
        """
        checked = _check_message(None, {"role": role, "content": content, "sources": sources})
        raw = await driver(self.session)
        row = await raw.fetchrow(sql.ADD_MESSAGE, session_id, user_id, new_id(), *checked)
        if row is None:
            raise _gone(session_id)
        return adopt(self.session, ChatMessage, row)

    @translate_errors
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
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise InvalidDataError("messages", "must be a sequence of message mappings")
        rows = [_check_message(i, message) for i, message in enumerate(messages)]
        if not rows:
            await self.get_session(session_id, user_id=user_id)
            return []
        ids = [new_id() for _ in rows]  # time-ordered: (created_at, id) keeps input order
        roles, contents, sources = (list(column) for column in zip(*rows, strict=True))
        raw = await driver(self.session)
        status = await raw.execute(
            sql.ADD_MESSAGES, session_id, user_id, ids, roles, contents, sources
        )
        if status == "INSERT 0 0":  # the session is not the user's live one
            raise _gone(session_id)
        return ids

    @translate_errors
    async def history(
        self,
        session_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        limit: int = 50,
        before: uuid.UUID | None = None,
    ) -> list[ChatMessage]:
        """The latest `limit` messages (older than message `before`, if given), oldest first."""
        check_limit(limit)
        raw = await driver(self.session)
        if before is None:
            rows = await raw.fetch(sql.HISTORY, session_id, user_id, limit)
        else:
            rows = await raw.fetch(sql.HISTORY_BEFORE, session_id, user_id, limit, before)
        if not rows:
            raise _gone(session_id)
        if rows[0]["anchor"] is None:
            raise NotFoundError(f"message {before} not found in chat session {session_id}")
        if rows[0]["id"] is None:  # the LEFT JOIN's one empty row: no (older) messages
            return []
        return adopt_all(self.session, ChatMessage, reversed(rows))

    @translate_errors
    async def list_sessions(self, user_id: uuid.UUID, *, limit: int = 20) -> list[ChatSession]:
        """The user's unexpired sessions, most recent activity first."""
        check_limit(limit)
        params = {"p_user_id": user_id, "p_limit": limit}
        return list(await self.session.scalars(sql.list_sessions(), params))

    @translate_errors
    async def purge_expired(self, *, now: datetime | None = None) -> int:
        """Delete every expired session (their messages by cascade); returns how many.

        A maintenance job: objects already loaded in this session are not marked deleted.
        """
        check_aware("now", now)
        result = await self.session.execute(sql.purge_expired(), {"p_now": now})
        return int(getattr(result, "rowcount", 0))

    @translate_errors
    async def delete_session(self, session_id: uuid.UUID, *, user_id: uuid.UUID) -> None:
        """Delete the user's live session and its messages; an expired one is already gone."""
        params = {"p_session_id": session_id, "p_user_id": user_id}
        if (await self.session.execute(sql.delete_session(), params)).first() is None:
            raise _gone(session_id)
