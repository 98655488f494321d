"""Values on their way in: naive datetimes refused before SQL, JSONB changes and binds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from exportsathi_db.errors import InvalidDataError
from exportsathi_db.models import Base, CertificationProgress, Report
from exportsathi_db.models.base import AwareDateTime, validated
from tests.factories import make_report, make_user
from tests.statements import count_statements

NAIVE = datetime(2026, 3, 1, 9, 30)  # no tzinfo: PostgreSQL would read it in its own zone
DATETIME_COLUMNS = [
    (mapper.class_, column.key)
    for mapper in Base.registry.mappers
    for column in mapper.local_table.columns
    if isinstance(column.type, AwareDateTime)
]


def test_every_timestamp_column_is_covered() -> None:
    assert len(DATETIME_COLUMNS) == 25  # the ts columns of SCHEMA.md
    assert {model.__tablename__ for model, _ in DATETIME_COLUMNS} == {
        mapper.class_.__tablename__ for mapper in Base.registry.mappers
    }


@pytest.mark.parametrize(
    ("model", "column"),
    DATETIME_COLUMNS,
    ids=[f"{m.__tablename__}.{c}" for m, c in DATETIME_COLUMNS],
)
def test_a_naive_datetime_is_refused_everywhere(model: type[Base], column: str) -> None:
    with pytest.raises(InvalidDataError, match="timezone-aware") as in_constructor:
        model(**{column: NAIVE})
    assert in_constructor.value.field == column
    row = model()
    with pytest.raises(InvalidDataError, match="timezone-aware"):
        setattr(row, column, NAIVE)
    with pytest.raises(InvalidDataError, match="timezone-aware"):
        validated(model, {column: NAIVE})  # the check repositories run before Core statements
    aware = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    setattr(row, column, aware)
    assert validated(model, {column: aware}) == {column: aware}


async def test_core_and_typed_text_binds_refuse_naive_datetimes_too(
    db_session: AsyncSession,
) -> None:
    from exportsathi_db.models import User

    user = await make_user(db_session)
    # Raw session use surfaces it wrapped; session_scope() and repositories unwrap it.
    async with count_statements(db_session) as seen:
        with pytest.raises(StatementError) as core:
            await db_session.execute(
                update(User).where(User.id == user.id).values(last_login=NAIVE)
            )
    assert seen == [] and isinstance(core.value.orig, InvalidDataError)
    typed = text("UPDATE users SET last_login = :t").bindparams(
        bindparam("t", type_=AwareDateTime())
    )
    with pytest.raises(StatementError) as raw:
        await db_session.execute(typed, {"t": NAIVE})
    assert isinstance(raw.value.orig, InvalidDataError)
    stored = await db_session.execute(text("SELECT last_login FROM users"))
    assert stored.scalar_one() is None


async def test_a_refused_datetime_sends_no_sql_and_changes_nothing(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError, match="last_login"):
            user.last_login = NAIVE
        await db_session.flush()
    assert seen == []
    stored = await db_session.execute(
        text("SELECT last_login FROM users WHERE id = :id"), {"id": user.id}
    )
    assert stored.scalar_one() is None


async def _stored(session: AsyncSession, report: Report) -> Any:
    sql = text("SELECT report_data FROM reports WHERE id = :id")
    return (await session.execute(sql, {"id": report.id})).scalar_one()


async def test_top_level_jsonb_changes_are_saved_on_flush(db_session: AsyncSession) -> None:
    report = await make_report(db_session, await make_user(db_session), report_data={"a": 1})
    report.report_data["b"] = 2
    del report.report_data["a"]
    await db_session.flush()
    assert await _stored(db_session, report) == {"b": 2}


async def test_nested_jsonb_changes_need_flag_modified(db_session: AsyncSession) -> None:
    data = {"certifications": {"FDA": "pending"}}
    report = await make_report(db_session, await make_user(db_session), report_data=data)
    report.report_data["certifications"]["FDA"] = "done"  # in place, one level down
    await db_session.flush()
    assert await _stored(db_session, report) == {"certifications": {"FDA": "pending"}}

    flag_modified(report, "report_data")
    await db_session.flush()
    assert await _stored(db_session, report) == {"certifications": {"FDA": "done"}}


async def test_a_jsonb_array_tracks_appends(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    cert = CertificationProgress(
        user_id=user.id,
        report_id=report.id,
        certification_id="BIS",
        certification_name="BIS mark",
        certification_type="IN",
    )
    db_session.add(cert)
    await db_session.flush()
    cert.documents_completed.append("test_report.pdf")
    await db_session.flush()
    sql = text("SELECT documents_completed FROM certification_progress WHERE id = :id")
    assert (await db_session.execute(sql, {"id": cert.id})).scalar_one() == ["test_report.pdf"]


async def test_raw_sql_with_a_dict_needs_a_jsonb_bind(db_session: AsyncSession) -> None:
    report = await make_report(db_session, await make_user(db_session), report_data={"v": 0})
    update = "UPDATE reports SET report_data = :data WHERE id = :id"
    value = {"hs": "0910.30", "tags": ["spice", "organic"]}
    with pytest.raises(DBAPIError, match="invalid input for query argument"):
        async with db_session.begin_nested():
            await db_session.execute(text(update), {"data": value, "id": report.id})
    assert await _stored(db_session, report) == {"v": 0}

    typed = text(update).bindparams(bindparam("data", type_=JSONB))
    await db_session.execute(typed, {"data": value, "id": report.id})
    assert await _stored(db_session, report) == value


async def test_an_id_of_the_wrong_type_is_invalid_data_not_a_driver_error(
    db_session: AsyncSession,
) -> None:
    from exportsathi_db.repositories import ChatRepository

    user = await make_user(db_session)
    with pytest.raises(InvalidDataError):
        await ChatRepository(db_session).get_session("nope", user_id=user.id)  # type: ignore[arg-type]
