"""ReportRepository.list_for_user: newest first, keyset pages, filters, one statement a page."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asyncpg.connection import LoggedQuery
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import InvalidDataError
from exportsathi_db.repositories import executor
from exportsathi_db.repositories.base import Page, encode_cursor
from exportsathi_db.repositories.reports import ReportRepository
from exportsathi_db.views import ReportView
from tests.factories import make_report, make_user
from tests.statements import count_statements


async def _all_pages(
    repo: ReportRepository, user_id: uuid.UUID, **filters: object
) -> list[list[uuid.UUID]]:
    pages: list[list[uuid.UUID]] = []
    cursor: str | None = None
    while True:
        page = await repo.list_for_user(user_id, cursor=cursor, **filters)  # type: ignore[arg-type]
        pages.append([report.id for report in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def test_pages_through_25_reports_newest_first_with_no_duplicates_or_misses(
    db_session: AsyncSession,
) -> None:
    user, other = await make_user(db_session), await make_user(db_session)
    # One transaction: all share created_at, so the time-ordered id breaks the tie.
    made = [(await make_report(db_session, user)).id for _ in range(25)]
    await make_report(db_session, other)
    repo = ReportRepository(db_session)
    async with count_statements(db_session) as seen:
        pages = await _all_pages(repo, user.id, limit=10)
    assert len(seen) == 3  # one statement per page
    first = await repo.list_for_user(user.id, limit=10)
    assert isinstance(first, Page) and {type(r) for r in first.items} == {ReportView}
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [report_id for page in pages for report_id in page] == made[::-1]


async def test_created_at_orders_before_the_id(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    # Ids grow with insertion; created_at runs the other way for the first three.
    made = [
        await make_report(db_session, user, created_at=start + timedelta(days=offset))
        for offset in (3, 2, 1, 1, 5)
    ]
    pages = await _all_pages(ReportRepository(db_session), user.id, limit=2)
    expected = [made[4], made[0], made[1], made[3], made[2]]
    assert [i for page in pages for i in page] == [r.id for r in expected]


async def test_an_exact_page_has_no_next_cursor(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    for _ in range(3):
        await make_report(db_session, user)
    page = await ReportRepository(db_session).list_for_user(user.id, limit=3)
    assert len(page.items) == 3 and page.next_cursor is None


async def test_filters_combine_with_paging(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    for i in range(6):
        await make_report(
            db_session,
            user,
            status="failed" if i % 2 else "completed",
            destination_country="Germany" if i < 3 else "Japan",
            hs_code=f"0910.{i % 3}",
        )
    repo = ReportRepository(db_session)
    failed = [i for page in await _all_pages(repo, user.id, limit=2, status="failed") for i in page]
    assert len(failed) == 3
    page = await repo.list_for_user(user.id, destination_country="Japan", status="completed")
    assert [(r.destination_country, r.status) for r in page.items] == [("Japan", "completed")]
    page = await repo.list_for_user(user.id, hs_code="0910.0")
    assert {r.hs_code for r in page.items} == {"0910.0"} and len(page.items) == 2
    assert (await repo.list_for_user(user.id, hs_code="9999")).items == []


async def test_a_user_without_reports_gets_an_empty_last_page(db_session: AsyncSession) -> None:
    user, other = await make_user(db_session), await make_user(db_session)
    await make_report(db_session, other)
    page = await ReportRepository(db_session).list_for_user(user.id)
    assert list(page.items) == [] and page.next_cursor is None
    page = await ReportRepository(db_session).list_for_user(uuid.uuid4())
    assert list(page.items) == [] and page.next_cursor is None


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": encode_cursor(datetime(2025, 1, 1, tzinfo=UTC), uuid.uuid4())[:-3]}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"status": "done"}, "status"),
        ({"hs_code": "x" * 21}, "hs_code"),
    ],
)
async def test_bad_arguments_are_rejected_before_sql(
    db_session: AsyncSession, arguments: dict[str, object], field: str
) -> None:
    user = await make_user(db_session)
    repo = ReportRepository(db_session)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await repo.list_for_user(user.id, **arguments)  # type: ignore[arg-type]
    assert caught.value.field == field and seen == []


async def test_the_user_index_serves_the_page_query(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
        await db_session.execute(text(f"SET LOCAL {setting} = off"))  # as on a big table
    sent: list[tuple[str, tuple[object, ...]]] = []

    def record(query: LoggedQuery) -> None:
        sent.append((query.query, tuple(query.args)))

    # The transaction is open (SET LOCAL), so the page query goes straight to asyncpg.
    raw = (await (await db_session.connection()).get_raw_connection()).driver_connection
    assert raw is not None
    raw.add_query_logger(record)
    try:
        cursor = encode_cursor(report.created_at, report.id)
        page = await ReportRepository(db_session).list_for_user(user.id, cursor=cursor)
        await asyncio.sleep(0)  # asyncpg calls query loggers with call_soon
    finally:
        raw.remove_query_logger(record)
    assert list(page.items) == []
    ((statement, parameters),) = sent
    explained = await executor.fetch(db_session, f"EXPLAIN {statement}", *parameters)
    plan = "\n".join(line for (line,) in explained)
    assert "Index Scan using ix_reports_user_id_created_at" in plan and "Sort" not in plan
    assert "created_at" in plan.split("Index Cond", 1)[1].split("\n", 1)[0]
