"""ChatRepository's statements: plain PostgreSQL with `$n` parameters, run through `executor`.

Expired sessions are gone for every statement but PURGE_EXPIRED. JSONB parameters are JSON
text (NULL: SQL NULL), cast to jsonb in the statement.
"""

from __future__ import annotations

from exportsathi_db.views import ChatMessageView, ChatSessionView
from exportsathi_db.views.base import column_list

_SESSION = column_list(ChatSessionView, "s")
_MESSAGE = column_list(ChatMessageView)

# An unexpired session (alias s).
_LIVE = "(s.expires_at IS NULL OR s.expires_at > now())"
# The user's live session: $1 session id, $2 user id.
_OWNED = f"s.id = $1 AND s.user_id = $2 AND {_LIVE}"

# INSERT ... SELECT FROM users, LEFT JOIN the user's report $3 (NULL: a chat about no report):
# no row, no such user (or not their report), nothing written. $1 id, $2 user id, $3 report
# id, $4 context data (JSON text), $5 ttl (NULL: never expires).
CREATE_SESSION = f"""INSERT INTO chat_sessions AS s
    (id, user_id, report_id, context_data, expires_at)
SELECT $1::uuid, u.id, r.id, $4::text::jsonb, now() + $5::interval
FROM users u LEFT JOIN reports r ON r.id = $3::uuid AND r.user_id = u.id
WHERE u.id = $2 AND ($3::uuid IS NULL OR r.id IS NOT NULL)
RETURNING {_SESSION}"""

GET_SESSION = f"SELECT {_SESSION} FROM chat_sessions s WHERE {_OWNED}"

# $1 user id, $2 limit.
LIST_SESSIONS = f"""SELECT {_SESSION} FROM chat_sessions s
WHERE s.user_id = $1 AND {_LIVE}
ORDER BY s.last_activity DESC, s.id DESC
LIMIT $2"""

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
RETURNING {_MESSAGE}"""

# Parallel arrays $3 ids, $4 roles, $5 contents, $6 sources (JSON text); no rows read back.
ADD_MESSAGES = f"""{_TOUCHED}
SELECT m.id, touched.id, m.role, m.content, m.sources::jsonb
FROM touched CROSS JOIN unnest($3::uuid[], $4::text[], $5::text[], $6::text[])
    AS m(id, role, content, sources)"""

# The session row LEFT JOIN LATERAL its latest $3 messages (older than message $4 in the
# paged form), newest first. Each row is `anchor` then a message. No row: no such live
# session of the user; `anchor` NULL: $4 is not a message of this session; message columns
# NULL: no (older) messages.
_RECENT = f"""LEFT JOIN LATERAL (
    SELECT {_MESSAGE} FROM chat_messages
    WHERE session_id = s.id{{older}}
    ORDER BY created_at DESC, id DESC LIMIT $3) AS m ON true"""
HISTORY = f"""SELECT true AS anchor, {column_list(ChatMessageView, "m")} FROM chat_sessions s
{_RECENT.format(older="")}
WHERE {_OWNED}"""
HISTORY_BEFORE = f"""SELECT c.id AS anchor, {column_list(ChatMessageView, "m")} FROM chat_sessions s
LEFT JOIN LATERAL (
    SELECT created_at, id FROM chat_messages WHERE id = $4 AND session_id = s.id) AS c ON true
{_RECENT.format(older=" AND (created_at, id) < (c.created_at, c.id)")}
WHERE {_OWNED}"""

DELETE_SESSION = f"DELETE FROM chat_sessions s WHERE {_OWNED}"

# $1 the cutoff (NULL: the transaction's time).
PURGE_EXPIRED = "DELETE FROM chat_sessions WHERE expires_at <= coalesce($1::timestamptz, now())"
