"""chat_sessions and their chat_messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from exportsathi_db.models.base import (
    JSON_ARRAY,
    JSON_OBJECT,
    Base,
    CreatedAtMixin,
    IdMixin,
    children,
    foreign_key,
)
from exportsathi_db.models.enums import MessageRole, sql_in

if TYPE_CHECKING:
    from exportsathi_db.models.reports import Report
    from exportsathi_db.models.users import User


class ChatSession(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "chat_sessions"
    __table_args__ = (Index(None, "expires_at"),)

    user_id: Mapped[uuid.UUID] = foreign_key("users")
    report_id: Mapped[uuid.UUID | None] = foreign_key("reports", nullable=True)
    context_data: Mapped[dict[str, Any] | None] = mapped_column(JSON_OBJECT)
    last_activity: Mapped[datetime] = mapped_column(nullable=False, server_default=func.now())
    expires_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="chat_sessions", lazy="raise")
    report: Mapped[Report | None] = relationship(back_populates="chat_sessions", lazy="raise")
    messages: Mapped[list[ChatMessage]] = children(
        "session", order_by="(ChatMessage.created_at, ChatMessage.id)"
    )


class ChatMessage(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        CheckConstraint(sql_in("role", MessageRole), name="role"),
        Index(None, "created_at"),
        # A session's history in order; the time-ordered id breaks ties within a transaction.
        Index("ix_chat_messages_session_id_created_at", "session_id", "created_at", "id"),
    )

    session_id: Mapped[uuid.UUID] = foreign_key("chat_sessions")
    role: Mapped[str] = mapped_column(
        String(20), nullable=False, info={"choices": list(MessageRole)}
    )
    content: Mapped[str] = mapped_column(Text, nullable=False)
    sources: Mapped[list[Any] | None] = mapped_column(JSON_ARRAY)

    session: Mapped[ChatSession] = relationship(back_populates="messages", lazy="raise")
