"""Hostile input in repository fields: each value gets a typed error or is stored and read
back byte for byte; nothing else is written; the server and the pool stay healthy."""

from __future__ import annotations

import reprlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db import (
    AnalysisRepository,
    ChatRepository,
    DatabaseConnection,
    ExportSathiDBError,
    InvalidDataError,
    ReportRepository,
    UserRepository,
)
from exportsathi_db.models import Base, MessageRole
from exportsathi_db.validation import MAX_JSON_DEPTH
from tests.factories import PASSWORD_HASH, make_user, unique
from tests.statements import count_statements

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


# --- The value rules every entry point shares (exportsathi_db.validation) ---------------------
# Each hostile value is refused with an InvalidDataError naming the field before any SQL is
# sent: nothing is written and the caller's transaction goes on. Or it is stored exactly.

PLUS_14, MINUS_14 = timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))


@dataclass
class World:
    """One user's report, certification and chat session, and the repositories over them."""

    session: AsyncSession
    user_id: uuid.UUID
    report_id: uuid.UUID
    certification_id: uuid.UUID
    chat_id: uuid.UUID

    @property
    def reports(self) -> ReportRepository:
        return ReportRepository(self.session)


async def world(session: AsyncSession) -> World:
    user = await make_user(session)
    reports = ReportRepository(session)
    report = await reports.create(
        user_id=user.id, product_name="Tea", destination_country="UK", report_data={}
    )
    certification = await reports.add_certification(
        report.id,
        user_id=user.id,
        certification_id="FDA",
        certification_name="US FDA registration",
        certification_type="regulatory",
    )
    chat = await ChatRepository(session).create_session(user_id=user.id)
    return World(session, user.id, report.id, certification.id, chat.id)


EXPORT: dict[str, Any] = {"cost_savings": Decimal(1), "timeline_reduction_days": 1}
# Each entry point with one value in the named keyword argument (the rest valid).
CALLS: dict[str, Callable[..., Awaitable[Any]]] = {
    "reports.create": lambda w, **v: w.reports.create(
        user_id=w.user_id,
        **({"product_name": "Tea", "destination_country": "UK", "report_data": {}} | v),
    ),
    "reports.update": lambda w, **v: w.reports.update(w.report_id, user_id=w.user_id, **v),
    "reports.add_certification": lambda w, **v: w.reports.add_certification(
        w.report_id,
        user_id=w.user_id,
        **{"certification_id": "CE", "certification_name": "CE", "certification_type": "r"} | v,
    ),
    "reports.update_certification": lambda w, **v: w.reports.update_certification(
        w.certification_id, user_id=w.user_id, **v
    ),
    "reports.add_document": lambda w, **v: w.reports.add_document(
        w.report_id, user_id=w.user_id, **{"document_type": "invoice", "document_data": {}} | v
    ),
    "chat.create_session": lambda w, **v: ChatRepository(w.session).create_session(
        user_id=w.user_id, **v
    ),
    "chat.add_message": lambda w, **v: ChatRepository(w.session).add_message(
        w.chat_id, user_id=w.user_id, role="user", content="Hi", **v
    ),
    "chat.add_messages": lambda w, sources: ChatRepository(w.session).add_messages(
        w.chat_id,
        user_id=w.user_id,
        messages=[{"role": "user", "content": "Hi", "sources": sources}],
    ),
    "chat.purge_expired": lambda w, **v: ChatRepository(w.session).purge_expired(**v),
    "analyses.save_finance": lambda w, **v: AnalysisRepository(w.session).save_finance(
        w.report_id, user_id=w.user_id, **{"working_capital_data": {}} | v
    ),
    "analyses.save_logistics": lambda w, **v: AnalysisRepository(w.session).save_logistics(
        w.report_id, user_id=w.user_id, **v
    ),
    "analyses.record_export": lambda w, **v: AnalysisRepository(w.session).record_export(
        w.user_id, **EXPORT | v
    ),
    "users.update": lambda w, **v: UserRepository(w.session).update(w.user_id, **v),
}

HOSTILE_VALUES = [
    # 1. numbers must be finite (a signalling NaN escaped as a raw ValueError)
    ("reports.create", "hs_code_confidence", Decimal("sNaN"), "finite"),
    ("reports.create", "hs_code_confidence", Decimal("NaN"), "finite"),
    ("reports.create", "estimated_cost", Decimal("-Inf"), "finite"),
    ("reports.create", "estimated_cost", Decimal("sNaN"), "finite"),
    ("reports.update", "estimated_cost", Decimal("sNaN"), "finite"),
    ("analyses.record_export", "cost_savings", Decimal("sNaN"), "finite"),
    # 2. numeric(p, s) holds the value exactly or refuses it (was rounded: 0.00001 -> 0.00)
    ("reports.create", "estimated_cost", Decimal("0.00001"), "at most 2 decimal places"),
    ("reports.create", "estimated_cost", Decimal("1.005"), "at most 2 decimal places"),
    ("reports.create", "estimated_cost", Decimal("1E+10"), "out of range"),
    ("reports.create", "hs_code_confidence", Decimal("92.555"), "at most 2 decimal places"),
    ("reports.create", "hs_code_confidence", 92.5, "not a float"),
    ("reports.update", "hs_code_confidence", Decimal("92.555"), "at most 2 decimal places"),
    ("reports.update", "estimated_cost", 0.1, "not a float"),
    ("analyses.record_export", "cost_savings", Decimal("1.005"), "decimal"),
    ("analyses.record_export", "cost_savings", Decimal("0.00001"), "decimal"),
    ("analyses.record_export", "cost_savings", 12.5, "Decimal"),
    # 3. JSON keys must be strings ({1: 'a', '1': 'b'} was stored as {'1': 'b'})
    ("reports.create", "report_data", {1: "a", "1": "b"}, "keys must be strings"),
    ("reports.update", "report_data", {"k": {2: "x"}}, "keys must be strings"),
    ("reports.add_certification", "documents_completed", [{1: "x"}], "keys must be strings"),
    ("reports.update_certification", "documents_completed", [{"a": {None: 1}}], "keys must"),
    ("reports.add_document", "document_data", {1: "a"}, "keys must be strings"),
    ("reports.add_document", "validation_results", {True: "x"}, "keys must be strings"),
    ("chat.create_session", "context_data", {1: "a", "1": "b"}, "keys must be strings"),
    ("analyses.save_finance", "working_capital_data", {1: "a"}, "keys must be strings"),
    ("analyses.save_finance", "financing_options", {"a": [{2: "b"}]}, "keys must be strings"),
    ("analyses.save_logistics", "freight_estimate", {1.5: "x"}, "keys must be strings"),
    ("chat.add_message", "sources", [{1: "a", "1": "b"}], "keys must"),
    ("chat.add_messages", "sources", [{1: "a"}], "keys must"),
    # 4. lone surrogates and NULs in JSON strings (the server refused them, field garbled)
    ("reports.create", "report_data", {"a": "\ud800"}, "lone surrogates"),
    ("reports.create", "report_data", {"\udc00": "a"}, "lone surrogates"),
    ("reports.create", "report_data", {"a": ["x\x00"]}, "NUL"),
    ("reports.add_document", "document_data", {"k\x00": 1}, "NUL"),
    ("reports.add_certification", "documents_completed", ["\ud800"], "lone surrogates"),
    ("chat.create_session", "context_data", {"lang": "\ud800"}, "lone surrogates"),
    ("analyses.save_finance", "rodtep_benefit_data", {"a": {"b": "\udfff"}}, "surrogates"),
    ("analyses.save_logistics", "route_analysis", {"a": "x\x00y"}, "NUL"),
    ("chat.add_message", "sources", [{"a": "\ud800"}], "surrogates"),
    # 5. nesting deeper than MAX_JSON_DEPTH (the server ran out of stack)
    ("reports.create", "report_data", nested(3000), "nested more than"),
    ("reports.update", "report_data", nested(MAX_JSON_DEPTH), "nested more than"),
    ("reports.add_document", "document_data", nested(3000), "nested more than"),
    ("reports.add_certification", "documents_completed", [nested(3000)], "nested more than"),
    ("chat.create_session", "context_data", nested(3000), "nested more than"),
    ("analyses.save_finance", "cash_flow_timeline", nested(3000), "nested more than"),
    ("chat.add_message", "sources", [nested(MAX_JSON_DEPTH)], "nested"),
    # 6. instants timestamptz cannot hold through the driver (a raw "date value out of range")
    ("analyses.record_export", "exported_at", datetime(1, 1, 1, tzinfo=PLUS_14), "out of range"),
    ("analyses.record_export", "exported_at", datetime.max.replace(tzinfo=UTC), "out of range"),
    ("analyses.record_export", "exported_at", datetime(9999, 12, 31, 23, tzinfo=MINUS_14), "range"),
    ("chat.purge_expired", "now", datetime(1, 1, 1, tzinfo=PLUS_14), "out of range"),
    ("chat.purge_expired", "now", datetime.min.replace(tzinfo=UTC), "out of range"),
    # 7. integers beyond int4 (or the column's range), counters included
    ("reports.create", "risk_score", 2**31, "out of range"),
    ("reports.create", "estimated_timeline_days", 2**31, "out of range"),
    ("reports.create", "monthly_volume", 2**31, "out of range"),
    ("reports.update", "estimated_timeline_days", -(2**31) - 1, "out of range"),
    ("analyses.record_export", "timeline_reduction_days", 2**31, "out of range"),
    ("analyses.record_export", "timeline_reduction_days", 2**63, "out of range"),
    ("users.update", "monthly_volume", 2**31, "out of range"),
]


async def snapshot(session: AsyncSession) -> tuple[Any, ...]:
    """Every table's row count and the metrics' totals: what a refused call leaves alone."""
    tables = ", ".join(f"(SELECT count(*) FROM {t.name})" for t in Base.metadata.sorted_tables)
    totals = "(SELECT (sum(exports_completed), sum(cost_savings)) FROM user_metrics)"
    return tuple((await session.execute(text(f"SELECT {tables}, {totals}"))).one())


def case_id(value: Any) -> str:
    return reprlib.repr(value)  # short, and safe for 3,000 levels of nesting


@pytest.mark.parametrize(("method", "field", "value", "says"), HOSTILE_VALUES, ids=case_id)
async def test_each_hostile_value_is_refused_before_any_sql_and_the_transaction_goes_on(
    db_session: AsyncSession, method: str, field: str, value: Any, says: str
) -> None:
    w = await world(db_session)
    before = await snapshot(db_session)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError, match=says) as refused:
            await CALLS[method](w, **{field: value})
    assert seen == []
    assert refused.value.field == (
        "messages[0].sources" if method == "chat.add_messages" else field
    )
    assert await snapshot(db_session) == before  # nothing written; the transaction still works
    await w.reports.update(w.report_id, user_id=w.user_id, risk_score=7)


async def test_values_at_the_edges_are_stored_and_read_back_exactly(
    db_session: AsyncSession,
) -> None:
    w = await world(db_session)
    document = {
        "deep": nested(MAX_JSON_DEPTH - 2),  # 100 containers with the outer object
        "हल्दी": "पाउडर 🌶️",
        MessageRole.USER: [10**4299, -(2**63), 1.5, 1e-300, 0.30000000000000004, True, None],
        "": "",
    }
    report = await w.reports.create(
        user_id=w.user_id,
        product_name="Tea",
        destination_country="UK",
        report_data=document,
        estimated_cost=Decimal("9999999999.99"),
        hs_code_confidence=Decimal("92.5000"),  # trailing zeros lose nothing
        estimated_timeline_days=2**31 - 1,
    )
    row = await db_session.execute(
        text("SELECT report_data, estimated_cost, hs_code_confidence FROM reports WHERE id = :i"),
        {"i": report.id},
    )
    assert tuple(row.one()) == (document, Decimal("9999999999.99"), Decimal("92.50"))

    analyses = AnalysisRepository(db_session)
    for moment in (
        datetime(1, 1, 1, tzinfo=MINUS_14),  # 0001-01-01 14:00 UTC
        datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC),
    ):
        await analyses.record_export(
            w.user_id, cost_savings=Decimal("0.01"), timeline_reduction_days=0, exported_at=moment
        )
        stored = await db_session.scalar(
            text("SELECT last_export_date FROM user_metrics WHERE user_id = :u"), {"u": w.user_id}
        )
        assert stored == moment and stored.tzinfo is not None
    chats = ChatRepository(db_session)
    assert await chats.purge_expired(now=datetime(1, 1, 1, 0, 0, 0, 1, UTC)) == 0
    assert await chats.purge_expired(now=datetime.max.replace(tzinfo=PLUS_14)) >= 1  # w's chat


async def refused_before_sql_or_stored(
    session: AsyncSession,
    field: str,
    write: Callable[[], Awaitable[uuid.UUID]],
    read_back: Callable[[uuid.UUID], Awaitable[Any]],
    value: Any,
) -> None:
    """An InvalidDataError naming `field` with no SQL sent and nothing changed, or the value
    reads back exactly; in both cases the caller's transaction goes on."""
    before = await snapshot(session)
    async with count_statements(session) as seen:
        try:
            written = await write()
        except InvalidDataError as error:
            assert (error.field, seen) == (field, [])
            assert await snapshot(session) == before
            return
    assert await read_back(written) == value


JSON_KEYS = st.text(st.characters(codec=None), max_size=4) | st.integers() | st.booleans()
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(min_value=-1e15, max_value=1e15)  # larger ones come back as ints (see report)
    | st.sampled_from([float("nan"), float("inf"), float("-inf")])
    | st.text(st.characters(codec=None), max_size=12)  # surrogates and NULs included
)
NASTY_JSON = st.dictionaries(
    JSON_KEYS,
    st.recursive(
        JSON_LEAVES,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JSON_KEYS, inner, max_size=3),
        max_leaves=20,
    ),
    max_size=4,
)


@SETTINGS
@given(document=NASTY_JSON)
async def test_nasty_json_is_refused_before_sql_or_stored_exactly(
    db_session: AsyncSession, document: dict[Any, Any]
) -> None:
    user = await make_user(db_session)

    async def write() -> uuid.UUID:
        report = await ReportRepository(db_session).create(
            user_id=user.id, product_name="Tea", destination_country="UK", report_data=document
        )
        return report.id

    async def read_back(report_id: uuid.UUID) -> Any:
        sql = text("SELECT report_data FROM reports WHERE id = :i")
        return await db_session.scalar(sql, {"i": report_id})

    await refused_before_sql_or_stored(db_session, "report_data", write, read_back, document)


@SETTINGS
@given(
    amount=st.decimals(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.floats()
    | st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2)
)
async def test_any_amount_is_refused_before_sql_or_stored_exactly(
    db_session: AsyncSession, amount: Any
) -> None:
    user = await make_user(db_session)

    async def write() -> uuid.UUID:
        report = await ReportRepository(db_session).create(
            user_id=user.id,
            product_name="Tea",
            destination_country="UK",
            report_data={},
            estimated_cost=amount,
        )
        return report.id

    async def read_back(report_id: uuid.UUID) -> Any:
        sql = text("SELECT estimated_cost FROM reports WHERE id = :i")
        return await db_session.scalar(sql, {"i": report_id})

    await refused_before_sql_or_stored(db_session, "estimated_cost", write, read_back, amount)


OFFSETS = [UTC, PLUS_14, MINUS_14, timezone(timedelta(hours=5, minutes=30))]
EDGES = [edge.replace(tzinfo=tz) for edge in (datetime.min, datetime.max) for tz in OFFSETS]


@SETTINGS
@given(moment=st.sampled_from(EDGES) | st.datetimes(timezones=st.sampled_from(OFFSETS)))
async def test_any_aware_instant_is_refused_before_sql_or_stored_exactly(
    db_session: AsyncSession, moment: datetime
) -> None:
    user = await make_user(db_session)

    async def write() -> uuid.UUID:
        await AnalysisRepository(db_session).record_export(
            user.id, cost_savings=0, timeline_reduction_days=0, exported_at=moment
        )
        return user.id

    async def read_back(user_id: uuid.UUID) -> Any:
        sql = text("SELECT last_export_date FROM user_metrics WHERE user_id = :u")
        return await db_session.scalar(sql, {"u": user_id})

    await refused_before_sql_or_stored(db_session, "exported_at", write, read_back, moment)
