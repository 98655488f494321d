"""A unit of work leaves no objects in reference cycles: with none, the cyclic garbage
collector has nothing to do per request, and no gen-2 pause lands in an HTTP p99."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Awaitable, Callable

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.repositories import UserRepository
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

    try:
        assert await _garbage_of(login) == Counter()
        assert await _garbage_of(read) == Counter()
    finally:
        async with db.session_scope() as session:
            await UserRepository(session).delete(user.id)
