"""Read models of chat sessions and their messages."""

import uuid
from datetime import datetime
from typing import Any

from exportsathi_db.views.base import read_model


@read_model
class ChatSessionView:
    """A user's Q&A session, optionally about one of their reports. It expires `expires_at`
    (None: never); each message slides that forward by the session's window."""

    id: uuid.UUID
    user_id: uuid.UUID
    report_id: uuid.UUID | None
    context_data: dict[str, Any] | None
    last_activity: datetime
    expires_at: datetime | None
    created_at: datetime


@read_model
class ChatMessageView:
    """One message of a session; `sources` are the answer's citations (None: none)."""

    id: uuid.UUID
    session_id: uuid.UUID
    role: str
    content: str
    sources: list[Any] | None
    created_at: datetime
