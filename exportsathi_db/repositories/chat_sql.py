"""ChatRepository's statements, built once on first use and bound per call.

Building a statement and its cache key costs more than running it on a warm connection, so
each is built once (`functools.cache`) and executed with a dict of parameters. Bind names
start with `p_`: Core DML would take an execute-time key named like a column as a value to
SET or INSERT.
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
    Text,
    bindparam,
    delete,
    func,
    null,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy import cast as sa_cast
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.orm import aliased

from exportsathi_db.models import ChatMessage, ChatSession, Report, User

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
def get_session() -> Executable:
    # populate_existing: a session loaded earlier in this unit of work shows the current row.
    return select(ChatSession).where(*owned()).execution_options(populate_existing=True)


@functools.cache
def add_messages(*, returning: bool) -> Executable:
    """WITH touched AS (UPDATE the session) INSERT ... SELECT FROM touched, unnest(arrays).

    Nothing is inserted unless the UPDATE found the user's live session; the UPDATE moves
    `last_activity` to now() and the expiry forward by the session's window (NULL stays NULL).
    Binds p_session_id, p_user_id and parallel arrays p_ids, p_roles, p_contents, p_sources.
    """
    touched = (
        update(SESSIONS)
        .where(*owned())
        .values(
            last_activity=func.now(),
            expires_at=func.now() + (SESSIONS.c.expires_at - SESSIONS.c.last_activity),
        )
        .returning(SESSIONS.c.id)
        .cte("touched")
    )
    incoming = (
        func.unnest(
            bindparam("p_ids", type_=ARRAY(UUID)),
            bindparam("p_roles", type_=ARRAY(Text)),
            bindparam("p_contents", type_=ARRAY(Text)),
            bindparam("p_sources", type_=ARRAY(Text)),
        )
        .table_valued("id", "role", "content", "sources")
        .render_derived("incoming")
    )
    source = select(
        incoming.c.id,
        touched.c.id,
        incoming.c.role,
        incoming.c.content,
        sa_cast(incoming.c.sources, JSONB),
    ).join_from(touched, incoming, true())
    columns = ["id", "session_id", "role", "content", "sources"]
    statement = insert(MESSAGES).from_select(columns, source)
    if not returning:  # a batch: the caller has the contents; skip loading the rows back
        return statement
    return select(ChatMessage).from_statement(statement.returning(*MESSAGES.c))


@functools.cache
def history(paged: bool) -> Select[Any]:
    """The session row LEFT JOIN LATERAL its latest messages (before message `before`).

    Zero rows: no such live session of the user. The first column is NULL when `before`
    is not a message of this session. Binds p_session_id, p_user_id, p_limit (and p_before).
    """
    page = select(ChatMessage).where(ChatMessage.session_id == ChatSession.id)
    anchor_id: ColumnElement[Any] = true()
    joins = []
    if paged:
        anchor = aliased(ChatMessage, name="anchor")
        cursor = (
            select(anchor.created_at, anchor.id)
            .where(anchor.id == bindparam("p_before"), anchor.session_id == ChatSession.id)
            .lateral("cursor")
        )
        joins.append(cursor)
        anchor_id = cursor.c.id
        page = page.where(
            tuple_(ChatMessage.created_at, ChatMessage.id)
            < tuple_(cursor.c.created_at, cursor.c.id)
        )
    recent = (
        page.order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
        .limit(bindparam("p_limit", type_=Integer))
        .lateral("recent")
    )
    statement = select(anchor_id, aliased(ChatMessage, recent)).select_from(ChatSession)
    for lateral in [*joins, recent]:
        statement = statement.outerjoin(lateral, true())
    return statement.where(*owned())


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
