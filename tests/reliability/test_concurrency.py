"""Concurrent units of work on the shared test database: no lost updates, no duplicate emails."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from sqlalchemy import text

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import AlreadyExistsError
from exportsathi_db.repositories.base import bump_metrics
from exportsathi_db.repositories.users import UserRepository
from tests.factories import PASSWORD_HASH, unique

PROFILE: dict[str, Any] = {
    "password_hash": PASSWORD_HASH,
    "business_type": "SaaS",
    "company_size": "Small",
}


@pytest_asyncio.fixture(loop_scope="session")
async def cleanup(db: DatabaseConnection) -> AsyncIterator[list[str]]:
    """Emails (any case) to delete, with everything of theirs, after the test."""
    emails: list[str] = []
    yield emails
    async with db.session_scope() as session:
        await session.execute(
            text("DELETE FROM users WHERE lower(email) = ANY(:emails)"),
            {"emails": [e.lower() for e in emails]},
        )


async def test_concurrent_metric_increments_are_not_lost(
    db: DatabaseConnection, cleanup: list[str]
) -> None:
    email = f"{unique('metrics')}@example.in"
    cleanup.append(email)
    async with db.session_scope() as session:
        user_id = (await UserRepository(session).create(email=email, **PROFILE)).id

    async def bump() -> None:
        async with db.session_scope() as session:
            await bump_metrics(session, user_id, reports_generated=1)

    await asyncio.gather(*(bump() for _ in range(200)))

    async with db.session_scope() as session:
        rows = await session.execute(
            text("SELECT reports_generated FROM user_metrics WHERE user_id = :u"), {"u": user_id}
        )
        assert rows.scalars().all() == [200]


async def test_concurrent_signups_with_one_email_make_one_user(
    db: DatabaseConnection, cleanup: list[str]
) -> None:
    local = unique("signup")
    variants = [_letter_case(f"{local}@example.in", i) for i in range(50)]
    assert len(set(variants)) == 50
    cleanup.append(variants[0])

    async def signup(email: str) -> uuid.UUID | BaseException:
        try:
            async with db.session_scope() as session:
                return (await UserRepository(session).create(email=email, **PROFILE)).id
        except AlreadyExistsError as exc:
            return exc

    results = await asyncio.gather(*(signup(email) for email in variants))

    created = [r for r in results if isinstance(r, uuid.UUID)]
    refused = [r for r in results if isinstance(r, AlreadyExistsError)]
    assert len(created) == 1 and len(refused) == 49
    assert all(e.constraint == "uq_users_lower_email" for e in refused)
    async with db.session_scope() as session:
        rows = await session.execute(
            text("SELECT id FROM users WHERE lower(email) = :e"), {"e": variants[0].lower()}
        )
        assert rows.scalars().all() == created


def _letter_case(email: str, n: int) -> str:
    """The n-th upper/lower-case spelling of email (bit i of n upper-cases the i-th letter)."""
    letters = [i for i, c in enumerate(email) if c.isalpha()]
    chars = list(email)
    for bit, pos in enumerate(letters):
        if n >> bit & 1:
            chars[pos] = chars[pos].upper()
    return "".join(chars)
