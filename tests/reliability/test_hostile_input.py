"""Hostile input in repository fields: each value gets a typed error or is stored and read
back byte for byte; nothing else is written; the server and the pool stay healthy."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db import (
    ChatRepository,
    DatabaseConnection,
    ExportSathiDBError,
    InvalidDataError,
    ReportRepository,
    UserRepository,
)
from tests.factories import PASSWORD_HASH, make_user, unique

INJECTIONS = [
    "'; DROP TABLE users; --",
    '" OR 1=1 --',
    "$1); DELETE FROM reports; --",
    "Robert'); TRUNCATE chat_messages CASCADE;--",
    "\\x00",
    "%s%s%s",
]
HOSTILE_TEXT = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(alphabet=st.characters(codec=None), max_size=200),  # surrogates and NULs included
    st.just("a" * 1_000_000),
    st.just("x\x00y"),
    st.just("\ud800"),
)
HOSTILE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=30,
)
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"n": value}
    return value


async def counts(session: AsyncSession) -> tuple[int, int, int]:
    row = await session.execute(
        text(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM reports),"
            " (SELECT count(*) FROM chat_messages)"
        )
    )
    return tuple(row.one())  # type: ignore[return-value]


async def stored_or_refused(session: AsyncSession, write: Any, read_back: Any, value: Any) -> None:
    """Either a typed error and no row change, or the value reads back exactly."""
    before = await counts(session)
    savepoint = await session.begin_nested()
    try:
        await write()
    except ExportSathiDBError:
        await savepoint.rollback()
        assert await counts(session) == before
        return
    await savepoint.commit()
    assert await read_back() == value


@SETTINGS
@given(value=HOSTILE_TEXT)
async def test_hostile_text_in_a_report_is_refused_or_kept_exactly(
    db_session: AsyncSession, value: str
) -> None:
    user = await make_user(db_session)
    new_id: list[uuid.UUID] = []

    async def write() -> None:
        report = await ReportRepository(db_session).create(
            user_id=user.id,
            product_name=value[:255],
            destination_country="Japan",
            report_data={"notes": value},
            ingredients=value,
        )
        new_id.append(report.id)

    async def read_back() -> str:
        row = await db_session.execute(
            text("SELECT ingredients, report_data->>'notes' FROM reports WHERE id = :i"),
            {"i": new_id[0]},
        )
        ingredients, notes = row.one()
        assert notes == ingredients
        return str(ingredients)

    await stored_or_refused(db_session, write, read_back, value)


@SETTINGS
@given(value=HOSTILE_TEXT, sources=HOSTILE_JSON)
async def test_hostile_chat_messages_are_refused_or_kept_exactly(
    db_session: AsyncSession, value: str, sources: Any
) -> None:
    user = await make_user(db_session)
    chat = await ChatRepository(db_session).create_session(user_id=user.id)
    message: list[uuid.UUID] = []

    async def write() -> None:
        added = await ChatRepository(db_session).add_message(
            chat.id, user_id=user.id, role="user", content=value, sources=[sources]
        )
        message.append(added.id)

    async def read_back() -> str:
        row = await db_session.execute(
            text("SELECT content, sources FROM chat_messages WHERE id = :i"), {"i": message[0]}
        )
        content, stored = row.one()
        assert stored == [sources]
        return str(content)

    await stored_or_refused(db_session, write, read_back, value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("risk_score", 101),
        ("risk_score", -1),
        ("risk_score", 2**63),
        ("monthly_volume", -5),
        ("estimated_cost", Decimal("1e20")),
        ("estimated_cost", Decimal("NaN")),
        ("hs_code_confidence", float("inf")),
        ("estimated_timeline_days", 10**12),
        ("report_data", nested(5000)),
        ("report_data", {"bad": float("nan")}),
        ("report_data", {"nul": "\x00"}),
        ("product_name", "p" * 256),
    ],
)
async def test_bad_numbers_and_json_are_invalid_data_and_nothing_is_written(
    db_session: AsyncSession, field: str, value: Any
) -> None:
    user = await make_user(db_session)
    before = await counts(db_session)
    fields: dict[str, Any] = {
        "product_name": "Tea",
        "destination_country": "UK",
        "report_data": {},
    } | {field: value}
    with pytest.raises(InvalidDataError):
        await ReportRepository(db_session).create(user_id=user.id, **fields)
    assert await counts(db_session) == before


async def test_naive_datetimes_are_refused_in_every_repository_field(
    db_session: AsyncSession,
) -> None:
    from exportsathi_db import AnalysisRepository

    user = await make_user(db_session)
    chat = await ChatRepository(db_session).create_session(user_id=user.id)
    naive = datetime(2026, 1, 1, 12, 0)
    calls = [
        AnalysisRepository(db_session).record_export(
            user.id, cost_savings=Decimal(1), timeline_reduction_days=1, exported_at=naive
        ),
        ChatRepository(db_session).purge_expired(now=naive),
    ]
    for call in calls:
        with pytest.raises(InvalidDataError):
            await call
    assert (await ChatRepository(db_session).get_session(chat.id, user_id=user.id)).id == chat.id


async def test_the_server_and_pool_are_fine_after_hostile_input(db: DatabaseConnection) -> None:
    email = f"{unique('hostile')}@example.in"
    async with db.session_scope() as session:
        users = UserRepository(session)
        for value in INJECTIONS:
            with pytest.raises(InvalidDataError):
                await users.create(
                    email=value,
                    password_hash=PASSWORD_HASH,
                    business_type="SaaS",
                    company_size="Micro",
                )
        user = await users.create(
            email=email,
            password_hash=PASSWORD_HASH,
            business_type="SaaS",
            company_size="Micro",
            company_name=INJECTIONS[0],
        )
    async with db.session_scope() as session:
        found = await UserRepository(session).get_by_email(email)
        assert found is not None and found.company_name == INJECTIONS[0]
        await UserRepository(session).delete(user.id)
    assert db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
