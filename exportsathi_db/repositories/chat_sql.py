"""ChatRepository's statements: the hot ones as fast-path SQL, the rest built once and bound.

The hot path (a chat turn, history, a batch of messages) is plain SQL with `$n` parameters,
sent on the session's asyncpg connection (see fastpath.py). The other statements are Core,
built once (`functools.cache`: building one costs more than running it) and executed with a
dict of parameters whose names start with `p_` (Core DML would take a key named like a
column as a value to SET or INSERT).
"""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Delete,
    Executable,
    Integer,
    Interval,
    Select,
    Table,
    bindparam,
    delete,
    func,
    null,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert

from exportsathi_db.models import ChatMessage, ChatSession, Report, User
from exportsathi_db.repositories.fastpath import columns

# The user's live session: $1 session id, $2 user id. Expired sessions are gone for every
# method but `purge_expired`.
_OWNED = "s.id = $1 AND s.user_id = $2 AND (s.expires_at IS NULL OR s.expires_at > now())"

GET_SESSION = f"SELECT {columns(ChatSession, 's')} FROM chat_sessions s WHERE {_OWNED}"

# Touch the session (last activity now, expiry slid forward by its window; NULL stays NULL)
# and insert only if that found the user's live session: one statement, nothing on a miss.
_TOUCHED = f"""WITH touched AS (
    UPDATE chat_sessions s SET last_activity = now(),
        expires_at = now() + (s.expires_at - s.last_activity)
    WHERE {_OWNED} RETURNING s.id)
INSERT INTO chat_messages (id, session_id, role, content, sources)"""

# $3 id, $4 role, $5 content, $6 sources as JSON text (NULL: none).
ADD_MESSAGE = f"""{_TOUCHED}
SELECT $3::uuid, touched.id, $4::text, $5::text, $6::text::jsonb FROM touched
RETURNING {columns(ChatMessage)}"""

# Parallel arrays $3 ids, $4 roles, $5 contents, $6 sources (JSON text); no rows read back.
ADD_MESSAGES = f"""{_TOUCHED}
SELECT m.id, touched.id, m.role, m.content, m.sources::jsonb
FROM touched CROSS JOIN unnest($3::uuid[], $4::text[], $5::text[], $6::text[])
    AS m(id, role, content, sources)"""

# The session row LEFT JOIN LATERAL its latest $3 messages (older than message $4 in the
# paged form), newest first. No row: no such live session of the user; `anchor` NULL: $4 is
# not a message of this session; message columns NULL: no (older) messages.
_RECENT = f"""LEFT JOIN LATERAL (
    SELECT {columns(ChatMessage)} FROM chat_messages
    WHERE session_id = s.id{{older}}
    ORDER BY created_at DESC, id DESC LIMIT $3) AS m ON true"""
HISTORY = f"""SELECT true AS anchor, {columns(ChatMessage, "m")} FROM chat_sessions s
{_RECENT.format(older="")}
WHERE {_OWNED}"""
HISTORY_BEFORE = f"""SELECT c.id AS anchor, {columns(ChatMessage, "m")} FROM chat_sessions s
LEFT JOIN LATERAL (
    SELECT created_at, id FROM chat_messages WHERE id = $4 AND session_id = s.id) AS c ON true
{_RECENT.format(older=" AND (created_at, id) < (c.created_at, c.id)")}
WHERE {_OWNED}"""

SESSIONS = cast(Table, ChatSession.__table__)
MESSAGES = cast(Table, ChatMessage.__table__)


def live() -> ColumnElement[bool]:
    """An unexpired session: expired ones are gone for every method but `purge_expired`."""
    return or_(ChatSession.expires_at.is_(None), ChatSession.expires_at > func.now())


def owned() -> list[ColumnElement[bool]]:
    """The user's live session; binds `p_session_id` and `p_user_id`."""
    return [
        ChatSession.id == bindparam("p_session_id"),
        ChatSession.user_id == bindparam("p_user_id"),
        live(),
    ]


@functools.cache
def create_session(with_report: bool) -> Executable:
    """INSERT ... SELECT FROM users (or FROM reports of the user): no row, no owner.

    Binds p_id, p_user_id, p_report_id, p_context_data (None: SQL NULL), p_ttl (None: never).
    """
    owner: Select[Any, Any]
    if with_report:
        owner = select(Report.user_id, Report.id).where(
            Report.id == bindparam("p_report_id"), Report.user_id == bindparam("p_user_id")
        )
    else:
        owner = select(User.id, null()).where(User.id == bindparam("p_user_id"))
    source = owner.add_columns(
        bindparam("p_id", type_=UUID),
        bindparam("p_context_data", type_=JSONB(none_as_null=True)),
        func.now() + bindparam("p_ttl", type_=Interval),  # NULL ttl: NULL expires_at
    )
    columns = ["user_id", "report_id", "id", "context_data", "expires_at"]
    statement = insert(SESSIONS).from_select(columns, source).returning(*SESSIONS.c)
    return select(ChatSession).from_statement(statement)


@functools.cache
def list_sessions() -> Executable:
    return (
        select(ChatSession)
        .where(ChatSession.user_id == bindparam("p_user_id"), live())
        .order_by(ChatSession.last_activity.desc(), ChatSession.id.desc())
        .limit(bindparam("p_limit", type_=Integer))
        .execution_options(populate_existing=True)
    )


@functools.cache
def purge_expired() -> Delete:
    """Binds `p_now` (None: the transaction's time)."""
    cutoff = func.coalesce(bindparam("p_now", type_=SESSIONS.c.expires_at.type), func.now())
    return delete(SESSIONS).where(SESSIONS.c.expires_at <= cutoff)


@functools.cache
def delete_session() -> Executable:
    return delete(ChatSession).where(*owned()).returning(ChatSession.id)
