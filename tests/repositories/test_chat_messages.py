"""ChatRepository messages against the real database: appending, sliding expiry, history pages."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.repositories import executor
from exportsathi_db.repositories.chat import ChatRepository
from exportsathi_db.views import ChatMessageView
from tests.factories import make_user
from tests.repositories.test_chat import expire, new_chat, scalar
from tests.statements import count_statements


async def message_count(session: AsyncSession) -> int:
    return int(await scalar(session, "SELECT count(*) FROM chat_messages"))


async def activity(session: AsyncSession, chat_id: uuid.UUID) -> tuple[Any, ...]:
    """(last_activity, expires_at) of a session, as the database holds them."""
    sql = "SELECT last_activity, expires_at FROM chat_sessions WHERE id = :i"
    return tuple((await session.execute(text(sql), {"i": chat_id})).one())


def conversation(count: int) -> list[dict[str, Any]]:
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"message {i}",
            "sources": [{"title": "DGFT", "n": i}] if i % 3 == 0 else None,
        }
        for i in range(count)
    ]


async def test_add_message_moves_last_activity_and_slides_the_window(
    db_session: AsyncSession,
) -> None:
    user, chat = await new_chat(db_session)
    repo = ChatRepository(db_session)
    # A 2-hour window whose last activity was an hour ago.
    await db_session.execute(
        text(
            "UPDATE chat_sessions SET last_activity = now() - interval '1 hour',"
            " expires_at = now() + interval '1 hour' WHERE id = :i"
        ),
        {"i": chat.id},
    )
    async with count_statements(db_session) as seen:
        message = await repo.add_message(
            chat.id, user_id=user.id, role="user", content="HS code for turmeric?"
        )
    assert len(seen) == 1
    assert isinstance(message, ChatMessageView) and message.id.version == 7
    assert (message.session_id, message.role, message.content, message.sources) == (
        chat.id,
        "user",
        "HS code for turmeric?",
        None,
    )
    now = await scalar(db_session, "SELECT now()")
    assert message.created_at == now
    assert await activity(db_session, chat.id) == (now, now + timedelta(hours=2))
    row = await db_session.execute(
        text("SELECT session_id, role, content, sources FROM chat_messages WHERE id = :i"),
        {"i": message.id},
    )
    assert tuple(row.one()) == (chat.id, "user", "HS code for turmeric?", None)


async def test_add_message_keeps_a_never_expiring_session_non_expiring(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    repo = ChatRepository(db_session)
    chat = await repo.create_session(user_id=user.id, ttl=None)
    sources = [{"title": "RoDTEP schedule", "url": "https://dgft.gov.in"}]
    message = await repo.add_message(
        chat.id, user_id=user.id, role="assistant", content="0.9%", sources=sources
    )
    assert message.sources == sources
    assert (await activity(db_session, chat.id))[1] is None
    stored = await scalar(
        db_session, "SELECT sources FROM chat_messages WHERE id = :i", i=message.id
    )
    assert stored == sources


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("role", {"role": "system"}),
        ("role", {"role": None}),
        ("content", {"content": None}),
        ("content", {"content": 42}),
        ("content", {"content": "nul\x00"}),
        ("content", {"content": "\ud800"}),
        ("sources", {"sources": {"not": "a list"}}),
        ("sources", {"sources": [float("inf")]}),
    ],
)
async def test_add_message_bad_input_is_rejected_before_sql(
    db_session: AsyncSession, field: str, values: dict[str, Any]
) -> None:
    user, chat = await new_chat(db_session)
    before = await activity(db_session, chat.id)
    arguments = {"role": "user", "content": "Hi"} | values
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await ChatRepository(db_session).add_message(chat.id, user_id=user.id, **arguments)
    assert caught.value.field == field and seen == []
    assert await message_count(db_session) == 0
    assert await activity(db_session, chat.id) == before


async def test_add_messages_to_a_foreign_missing_or_expired_session_writes_nothing(
    db_session: AsyncSession,
) -> None:
    user, chat = await new_chat(db_session)
    stranger = await make_user(db_session)
    repo = ChatRepository(db_session)
    await db_session.execute(
        text("UPDATE chat_sessions SET last_activity = now() - interval '1 hour' WHERE id = :i"),
        {"i": chat.id},
    )
    before = await activity(db_session, chat.id)
    for chat_id, user_id in [(chat.id, stranger.id), (uuid.uuid4(), user.id)]:
        with pytest.raises(NotFoundError):
            await repo.add_message(chat_id, user_id=user_id, role="user", content="Hi")
        for batch in (conversation(3), []):
            with pytest.raises(NotFoundError):
                await repo.add_messages(chat_id, user_id=user_id, messages=batch)
    assert await activity(db_session, chat.id) == before
    await expire(db_session, chat.id)
    expired = await activity(db_session, chat.id)
    with pytest.raises(NotFoundError, match="expired"):
        await repo.add_message(chat.id, user_id=user.id, role="user", content="Hi")
    with pytest.raises(NotFoundError, match="expired"):
        await repo.add_messages(chat.id, user_id=user.id, messages=conversation(2))
    assert await message_count(db_session) == 0
    assert await activity(db_session, chat.id) == expired


@pytest.mark.parametrize("count", [1, 1000])
async def test_add_messages_is_one_statement_whatever_the_count_and_keeps_order(
    db_session: AsyncSession, count: int
) -> None:
    user, chat = await new_chat(db_session)
    repo = ChatRepository(db_session)
    batch = conversation(count)
    # asyncpg looks the uuid[] type up once per connection, with statements of its own (jit
    # off, the type query, jit back on): have it done before counting the repository's.
    await executor.fetch(db_session, "SELECT $1::uuid[]", [])
    async with count_statements(db_session) as seen:
        added = await repo.add_messages(chat.id, user_id=user.id, messages=batch)
    assert len(seen) == 1
    assert len(added) == count and all(isinstance(i, uuid.UUID) for i in added)
    rows = await db_session.execute(
        text(
            "SELECT id, role, content, jsonb_typeof(sources) FROM chat_messages"
            " WHERE session_id = :s ORDER BY created_at, id"
        ),
        {"s": chat.id},
    )
    stored = [tuple(r) for r in rows]
    assert stored == [
        (i, m["role"], m["content"], None if m["sources"] is None else "array")
        for i, m in zip(added, batch, strict=True)
    ]  # input order kept; SQL NULL, not JSON null, for absent sources


async def test_add_messages_empty_batch_checks_the_session_and_writes_nothing(
    db_session: AsyncSession,
) -> None:
    user, chat = await new_chat(db_session)
    before = await activity(db_session, chat.id)
    async with count_statements(db_session) as seen:
        added = await ChatRepository(db_session).add_messages(chat.id, user_id=user.id, messages=[])
    assert added == []
    assert len(seen) == 1
    assert await message_count(db_session) == 0
    assert await activity(db_session, chat.id) == before


@pytest.mark.parametrize(
    ("field", "messages"),
    [
        ("messages[2].role", [*conversation(2), {"role": "bot", "content": "x"}]),
        ("messages[1].content", [*conversation(1), {"role": "user", "content": None}]),
        ("messages[1].role, content", [*conversation(1), {"content": "no role"}]),
        ("messages[0].author", [{"role": "user", "content": "x", "author": "me"}]),
        ("messages[1]", [*conversation(1), "just text"]),
        ("messages", "just text"),
        ("messages", {"role": "user", "content": "x"}),
    ],
)
async def test_add_messages_validates_every_message_before_sql(
    db_session: AsyncSession, field: str, messages: Any
) -> None:
    user, chat = await new_chat(db_session)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await ChatRepository(db_session).add_messages(
                chat.id, user_id=user.id, messages=messages
            )
    assert caught.value.field == field and seen == []
    assert await message_count(db_session) == 0


async def test_history_pages_back_from_the_latest_oldest_first(db_session: AsyncSession) -> None:
    user, chat = await new_chat(db_session)
    _, other = await new_chat(db_session, user)
    repo = ChatRepository(db_session)
    added = await repo.add_messages(chat.id, user_id=user.id, messages=conversation(7))
    await repo.add_message(other.id, user_id=user.id, role="user", content="elsewhere")
    await repo.add_message(chat.id, user_id=user.id, role="assistant", content="latest")
    async with count_statements(db_session) as seen:
        page = await repo.history(chat.id, user_id=user.id, limit=3)
    assert [m.content for m in page] == ["message 5", "message 6", "latest"]
    async with count_statements(db_session) as seen_before:
        older = await repo.history(chat.id, user_id=user.id, limit=3, before=page[0].id)
    assert len(seen) == len(seen_before) == 1
    assert [m.id for m in older] == added[2:5]
    rest = await repo.history(chat.id, user_id=user.id, before=older[0].id)
    assert [m.id for m in rest] == added[:2]
    assert await repo.history(chat.id, user_id=user.id, before=added[0]) == []
    everything = await repo.history(chat.id, user_id=user.id)
    assert [m.content for m in everything] == [f"message {i}" for i in range(7)] + ["latest"]


async def test_messages_are_frozen_read_models_equal_to_what_history_reads(
    db_session: AsyncSession,
) -> None:
    user, chat = await new_chat(db_session)
    repo = ChatRepository(db_session)
    sources = [{"title": "DGFT", "url": "https://dgft.gov.in"}]
    added = await repo.add_message(
        chat.id, user_id=user.id, role="assistant", content="IEC first", sources=sources
    )
    [read] = await repo.history(chat.id, user_id=user.id)
    assert read == added and read.sources == sources
    assert [f.name for f in dataclasses.fields(ChatMessageView)] == [
        "id",
        "session_id",
        "role",
        "content",
        "sources",
        "created_at",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.content = "changed"  # type: ignore[misc]
    assert list(db_session.identity_map.values()) == [user]  # nothing of the repository's


async def test_history_of_an_empty_foreign_or_expired_session(db_session: AsyncSession) -> None:
    user, chat = await new_chat(db_session)
    stranger, theirs = await new_chat(db_session)
    repo = ChatRepository(db_session)
    assert await repo.history(chat.id, user_id=user.id) == []
    foreign = await repo.add_message(theirs.id, user_id=stranger.id, role="user", content="x")
    for chat_id, user_id in [(theirs.id, user.id), (uuid.uuid4(), user.id)]:
        with pytest.raises(NotFoundError):
            await repo.history(chat_id, user_id=user_id)
    with pytest.raises(NotFoundError, match="message"):  # a cursor from another session
        await repo.history(chat.id, user_id=user.id, before=foreign.id)
    with pytest.raises(NotFoundError, match="message"):
        await repo.history(chat.id, user_id=user.id, before=uuid.uuid4())
    for limit in (0, 1001, 2.5):
        with pytest.raises(InvalidDataError, match="limit"):
            await repo.history(chat.id, user_id=user.id, limit=limit)  # type: ignore[arg-type]
    await expire(db_session, theirs.id)
    with pytest.raises(NotFoundError, match="expired"):
        await repo.history(theirs.id, user_id=stranger.id)


async def test_history_is_served_by_the_session_history_index(db_session: AsyncSession) -> None:
    user, chat = await new_chat(db_session)
    _, other = await new_chat(db_session, user)
    repo = ChatRepository(db_session)
    for chat_id in (chat.id, other.id):
        await repo.add_messages(chat_id, user_id=user.id, messages=conversation(1000))
    await db_session.execute(text("ANALYZE chat_messages"))
    latest = await repo.history(chat.id, user_id=user.id, limit=10)
    async with count_statements(db_session) as sent:
        await repo.history(chat.id, user_id=user.id, limit=10, before=latest[0].id)
    [statement] = sent
    plan = await executor.fetch(
        db_session, "EXPLAIN " + statement, chat.id, user.id, 10, latest[0].id
    )
    lines = "\n".join(row[0] for row in plan)
    assert "ix_chat_messages_session_id_created_at" in lines
    assert "Sort" not in lines  # the index gives the order; no sort of the session's messages
