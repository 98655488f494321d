"""A unit of work leaves no objects in reference cycles: with none, the cyclic garbage
collector has nothing to do per request, and no gen-2 pause lands in an HTTP p99."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Awaitable, Callable

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.repositories import ChatRepository, ReportRepository, UserRepository
from tests.factories import PASSWORD_HASH, unique

UNITS = 1000


async def _garbage_of(unit: Callable[[], Awaitable[object]]) -> Counter[str]:
    """The objects `UNITS` runs of `unit` leave only the cyclic collector can free."""
    for _ in range(50):  # warm caches: statements, codecs, pool connections
        await unit()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(UNITS):
            await unit()
        gc.collect()
        return Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_repository_units_of_work_leave_no_cyclic_garbage(db: DatabaseConnection) -> None:
    async with db.session_scope() as session:
        user = await UserRepository(session).create(
            email=f"{unique('gc')}@example.in",
            password_hash=PASSWORD_HASH,
            business_type="SaaS",
            company_size="Small",
        )

    async def login() -> object:
        async with db.session_scope() as session:
            users = UserRepository(session)
            found = await users.get_by_email(user.email)
            assert found is not None
            return await users.record_login(found.id)

    async def read() -> object:
        async with db.read_scope() as session:
            return await UserRepository(session).get(user.id)

    async with db.session_scope() as session:
        report = await ReportRepository(session).create(
            user_id=user.id,
            product_name="Coir mats",
            destination_country="Germany",
            report_data={"score": 61},
        )
        await ReportRepository(session).add_certification(
            report.id,
            user_id=user.id,
            certification_id="CE",
            certification_name="CE marking",
            certification_type="regulatory",
        )
        chat = await ChatRepository(session).create_session(user_id=user.id, ttl=None)

    async def report_page_and_chat_turn() -> object:
        async with db.session_scope() as session:
            await ReportRepository(session).get_full(report.id, user_id=user.id)
            chats = ChatRepository(session)
            await chats.add_message(chat.id, user_id=user.id, role="user", content="CE?")
            return await chats.history(chat.id, user_id=user.id, limit=5)

    try:
        assert await _garbage_of(login) == Counter()
        assert await _garbage_of(read) == Counter()
        assert await _garbage_of(report_page_and_chat_turn) == Counter()
    finally:
        async with db.session_scope() as session:
            await UserRepository(session).delete(user.id)
