"""ChatRepository sessions against the real database: ownership, expiry, listing, purging."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import ChatSession, User
from exportsathi_db.repositories.chat import ChatRepository
from exportsathi_db.views import ChatSessionView
from tests.factories import make_report, make_user
from tests.statements import count_statements


async def scalar(session: AsyncSession, sql: str, **params: Any) -> Any:
    return (await session.execute(text(sql), params)).scalar()


async def session_count(session: AsyncSession) -> int:
    return int(await scalar(session, "SELECT count(*) FROM chat_sessions"))


async def expire(session: AsyncSession, chat_id: uuid.UUID) -> None:
    """Put a session's expiry one second in the past (no sleeping)."""
    await session.execute(
        text("UPDATE chat_sessions SET expires_at = now() - interval '1 second' WHERE id = :i"),
        {"i": chat_id},
    )


async def new_chat(session: AsyncSession, user: User | None = None) -> tuple[User, ChatSessionView]:
    user = user or await make_user(session)
    return user, await ChatRepository(session).create_session(user_id=user.id)


async def test_create_session_in_one_statement_expiring_after_the_ttl(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    repo = ChatRepository(db_session)
    async with count_statements(db_session) as seen:
        chat = await repo.create_session(user_id=user.id, context_data={"topic": "FDA"})
    assert len(seen) == 1
    assert isinstance(chat, ChatSessionView)
    assert chat.id.version == 7 and chat.report_id is None
    assert (chat.user_id, chat.context_data) == (user.id, {"topic": "FDA"})
    row = (
        await db_session.execute(
            text(
                "SELECT user_id, context_data, expires_at - now(), last_activity = now()"
                " FROM chat_sessions WHERE id = :i"
            ),
            {"i": chat.id},
        )
    ).one()
    assert tuple(row) == (user.id, {"topic": "FDA"}, timedelta(hours=24), True)
    assert chat.expires_at == chat.last_activity + timedelta(hours=24)


async def test_create_session_for_own_report_or_never_expiring(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ChatRepository(db_session)
    chat = await repo.create_session(user_id=user.id, report_id=report.id, ttl=None)
    row = await db_session.execute(
        text("SELECT report_id, expires_at, context_data IS NULL FROM chat_sessions WHERE id = :i"),
        {"i": chat.id},
    )
    assert tuple(row.one()) == (report.id, None, True)  # SQL NULL, not JSON null
    short = await repo.create_session(user_id=user.id, ttl=timedelta(minutes=5))
    assert short.expires_at == short.last_activity + timedelta(minutes=5)


async def test_create_session_for_another_users_report_or_missing_owner_writes_nothing(
    db_session: AsyncSession,
) -> None:
    owner, stranger = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ChatRepository(db_session)
    for user_id, report_id in [
        (stranger.id, report.id),
        (owner.id, uuid.uuid4()),
        (uuid.uuid4(), None),
        (uuid.uuid4(), report.id),
    ]:
        with pytest.raises(NotFoundError):
            await repo.create_session(user_id=user_id, report_id=report_id)
    assert await session_count(db_session) == 0
    await repo.create_session(user_id=owner.id)  # the transaction is still usable
    assert await session_count(db_session) == 1


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("ttl", {"ttl": timedelta(0)}),
        ("ttl", {"ttl": timedelta(seconds=-5)}),
        ("ttl", {"ttl": 3600}),
        ("ttl", {"ttl": timedelta.max}),
        ("context_data", {"context_data": ["not", "an", "object"]}),
        ("context_data", {"context_data": {"x": float("nan")}}),
        ("context_data", {"context_data": {"x": "nul\x00"}}),
        ("context_data", {"context_data": {"x": object()}}),
    ],
)
async def test_create_session_bad_input_is_rejected_before_sql(
    db_session: AsyncSession, field: str, overrides: dict[str, Any]
) -> None:
    user = await make_user(db_session)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await ChatRepository(db_session).create_session(user_id=user.id, **overrides)
    assert caught.value.field == field and seen == []
    assert await session_count(db_session) == 0


async def test_get_session_hides_other_users_and_expired_sessions(
    db_session: AsyncSession,
) -> None:
    user, chat = await new_chat(db_session)
    stranger = await make_user(db_session)
    repo = ChatRepository(db_session)
    async with count_statements(db_session) as seen:
        found = await repo.get_session(chat.id, user_id=user.id)
    assert len(seen) == 1
    assert found == chat  # the same values: a read model compares by value
    for chat_id, user_id in [(chat.id, stranger.id), (uuid.uuid4(), user.id)]:
        with pytest.raises(NotFoundError):
            await repo.get_session(chat_id, user_id=user_id)
        assert await repo.get_session_or_none(chat_id, user_id=user_id) is None
    await expire(db_session, chat.id)
    with pytest.raises(NotFoundError, match="expired"):
        await repo.get_session(chat.id, user_id=user.id)


async def test_get_session_writes_pending_orm_changes_first_instead_of_missing_them(
    db_session: AsyncSession,
) -> None:
    user, chat = await new_chat(db_session)
    repo = ChatRepository(db_session)
    loaded = await db_session.get(ChatSession, chat.id)  # the caller's own ORM object
    assert loaded is not None
    loaded.context_data = {"topic": "REACH"}  # not flushed yet
    again = await repo.get_session(chat.id, user_id=user.id)  # flushes first, as the ORM would
    assert again.context_data == {"topic": "REACH"}
    assert chat.context_data is None  # a read model is a snapshot: the earlier one is unchanged
    stored = await scalar(
        db_session, "SELECT context_data FROM chat_sessions WHERE id = :i", i=chat.id
    )
    assert stored == {"topic": "REACH"}


async def test_sessions_are_frozen_read_models_and_nothing_enters_the_identity_map(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ChatRepository(db_session)
    chat = await repo.create_session(
        user_id=user.id, report_id=report.id, context_data={"lang": "hi"}, ttl=None
    )
    found = await repo.get_session(chat.id, user_id=user.id)
    [listed] = await repo.list_sessions(user.id)
    assert found == listed == chat
    assert (chat.user_id, chat.report_id, chat.context_data) == (user.id, report.id, {"lang": "hi"})
    assert chat.expires_at is None and chat.last_activity == chat.created_at
    assert [f.name for f in dataclasses.fields(ChatSessionView)] == [
        "id",
        "user_id",
        "report_id",
        "context_data",
        "last_activity",
        "expires_at",
        "created_at",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        chat.expires_at = None  # type: ignore[misc]
    assert set(db_session.identity_map.values()) == {user, report}  # nothing of the repository's


async def test_list_sessions_most_recent_activity_first_without_expired_or_foreign(
    db_session: AsyncSession,
) -> None:
    user, stranger = await make_user(db_session), await make_user(db_session)
    repo = ChatRepository(db_session)
    assert await repo.list_sessions(user.id) == []
    chats = [await repo.create_session(user_id=user.id) for _ in range(4)]
    await repo.create_session(user_id=stranger.id)
    for age, chat in enumerate(chats):
        await db_session.execute(
            text(
                "UPDATE chat_sessions SET last_activity = now() - :a * interval '1 min'"
                " WHERE id = :i"
            ),
            {"a": age, "i": chat.id},
        )
    await expire(db_session, chats[1].id)
    async with count_statements(db_session) as seen:
        listed = await repo.list_sessions(user.id, limit=20)
    assert len(seen) == 1
    assert [c.id for c in listed] == [chats[0].id, chats[2].id, chats[3].id]
    assert [c.id for c in await repo.list_sessions(user.id, limit=2)] == [chats[0].id, chats[2].id]
    assert await repo.list_sessions(uuid.uuid4()) == []
    for limit in (0, -1, 1001, "5", True):
        with pytest.raises(InvalidDataError, match="limit"):
            await repo.list_sessions(user.id, limit=limit)  # type: ignore[arg-type]


async def test_purge_expired_deletes_expired_sessions_and_their_messages(
    db_session: AsyncSession,
) -> None:
    user, old = await new_chat(db_session)
    _, live = await new_chat(db_session, user)
    _, forever = await new_chat(db_session, user)
    repo = ChatRepository(db_session)
    await db_session.execute(
        text("UPDATE chat_sessions SET expires_at = NULL WHERE id = :i"), {"i": forever.id}
    )
    await repo.add_message(old.id, user_id=user.id, role="user", content="Is REACH needed?")
    assert await repo.purge_expired() == 0
    await expire(db_session, old.id)
    async with count_statements(db_session) as seen:
        assert await repo.purge_expired() == 1
    assert len(seen) == 1
    remaining = await db_session.execute(text("SELECT id FROM chat_sessions ORDER BY id"))
    assert set(remaining.scalars()) == {live.id, forever.id}
    assert await scalar(db_session, "SELECT count(*) FROM chat_messages") == 0
    later = datetime.now(UTC) + timedelta(days=2)
    assert await repo.purge_expired(now=later) == 1  # `live` expires within 24 h
    assert await session_count(db_session) == 1


async def test_purge_expired_rejects_a_naive_now_before_sql(db_session: AsyncSession) -> None:
    _, chat = await new_chat(db_session)
    await expire(db_session, chat.id)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await ChatRepository(db_session).purge_expired(now=datetime(2099, 1, 1))
    assert caught.value.field == "now" and seen == []
    assert await session_count(db_session) == 1


async def test_delete_session_deletes_its_messages_only_for_the_owner(
    db_session: AsyncSession,
) -> None:
    user, chat = await new_chat(db_session)
    _, other = await new_chat(db_session, user)
    stranger = await make_user(db_session)
    repo = ChatRepository(db_session)
    await repo.add_message(chat.id, user_id=user.id, role="user", content="Namaste")
    for chat_id, user_id in [(chat.id, stranger.id), (uuid.uuid4(), user.id)]:
        with pytest.raises(NotFoundError):
            await repo.delete_session(chat_id, user_id=user_id)
    assert await session_count(db_session) == 2
    async with count_statements(db_session) as seen:
        await repo.delete_session(chat.id, user_id=user.id)
    assert len(seen) == 1
    assert await scalar(db_session, "SELECT count(*) FROM chat_messages") == 0
    assert await scalar(db_session, "SELECT id FROM chat_sessions") == other.id
    await expire(db_session, other.id)
    with pytest.raises(NotFoundError):
        await repo.delete_session(other.id, user_id=user.id)
    assert await session_count(db_session) == 1  # left for purge_expired


async def test_get_and_list_show_what_the_database_holds_now(db_session: AsyncSession) -> None:
    user, chat = await new_chat(db_session)
    await db_session.execute(
        text("UPDATE chat_sessions SET last_activity = now() - interval '1 hour' WHERE id = :i"),
        {"i": chat.id},
    )
    an_hour_ago = await scalar(db_session, "SELECT now() - interval '1 hour'")
    repo = ChatRepository(db_session)
    assert (await repo.get_session(chat.id, user_id=user.id)).last_activity == an_hour_ago
    assert [c.last_activity for c in await repo.list_sessions(user.id)] == [an_hour_ago]


BAD_IDS = ["", "abc", 5, {}, None]
ChatCall = Callable[[ChatRepository, Any, dict[str, Any]], Awaitable[Any]]
# (method, the id argument given the bad value) -> the call; `i` holds good ids.
CALLS_WITH_A_BAD_ID: dict[tuple[str, str], ChatCall] = {
    ("create_session", "user_id"): lambda r, bad, i: r.create_session(user_id=bad),
    ("create_session", "report_id"): lambda r, bad, i: r.create_session(
        user_id=i["user"], report_id=bad
    ),
    ("get_session", "session_id"): lambda r, bad, i: r.get_session(bad, user_id=i["user"]),
    ("get_session", "user_id"): lambda r, bad, i: r.get_session(i["chat"], user_id=bad),
    ("get_session_or_none", "session_id"): lambda r, bad, i: r.get_session_or_none(
        bad, user_id=i["user"]
    ),
    ("get_session_or_none", "user_id"): lambda r, bad, i: r.get_session_or_none(
        i["chat"], user_id=bad
    ),
    ("add_message", "session_id"): lambda r, bad, i: r.add_message(
        bad, user_id=i["user"], role="user", content="Hi"
    ),
    ("add_message", "user_id"): lambda r, bad, i: r.add_message(
        i["chat"], user_id=bad, role="user", content="Hi"
    ),
    ("add_messages", "session_id"): lambda r, bad, i: r.add_messages(
        bad, user_id=i["user"], messages=[{"role": "user", "content": "Hi"}]
    ),
    ("add_messages", "user_id"): lambda r, bad, i: r.add_messages(
        i["chat"], user_id=bad, messages=[]
    ),
    ("history", "session_id"): lambda r, bad, i: r.history(bad, user_id=i["user"]),
    ("history", "user_id"): lambda r, bad, i: r.history(i["chat"], user_id=bad),
    ("history", "before"): lambda r, bad, i: r.history(i["chat"], user_id=i["user"], before=bad),
    ("list_sessions", "user_id"): lambda r, bad, i: r.list_sessions(bad),
    ("delete_session", "session_id"): lambda r, bad, i: r.delete_session(bad, user_id=i["user"]),
    ("delete_session", "user_id"): lambda r, bad, i: r.delete_session(i["chat"], user_id=bad),
}
OPTIONAL_IDS = {("create_session", "report_id"), ("history", "before")}  # None: not given


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        pytest.param(call, bad, id=f"{call[0]}.{call[1]}-{bad!r}")
        for call in sorted(CALLS_WITH_A_BAD_ID)
        for bad in BAD_IDS
        if not (bad is None and call in OPTIONAL_IDS)
    ],
)
async def test_an_id_that_is_not_a_uuid_is_invalid_data_and_no_sql_is_sent(
    db_session: AsyncSession, call: tuple[str, str], bad: Any
) -> None:
    user, chat = await new_chat(db_session)
    before = await scalar(db_session, "SELECT count(*) FROM chat_messages")
    ids = {"user": user.id, "chat": chat.id}
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await CALLS_WITH_A_BAD_ID[call](ChatRepository(db_session), bad, ids)
    assert caught.value.field == call[1] and seen == []
    assert await session_count(db_session) == 1
    assert await scalar(db_session, "SELECT count(*) FROM chat_messages") == before
