"""A report's certifications: adding, listing, status changes, their dates and the counter."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import Report
from exportsathi_db.repositories.reports import ReportRepository
from exportsathi_db.views import CertificationView
from tests.factories import make_report, make_user
from tests.repositories.reports_helpers import count_rows, metrics, row, true_counts
from tests.statements import count_statements

LONG_AGO = datetime(2024, 4, 1, 9, 30, tzinfo=UTC)


async def _add(repo: ReportRepository, report: Report, **overrides: Any) -> CertificationView:
    fields: dict[str, Any] = {
        "certification_id": "FDA",
        "certification_name": "US FDA food facility registration",
        "certification_type": "mandatory",
    } | overrides
    return await repo.add_certification(report.id, user_id=report.user_id, **fields)


async def test_add_certification_starts_not_started_in_one_statement(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    async with count_statements(db_session) as seen:
        certification = await _add(repo, report, notes="ask the CHA")
    assert len(seen) == 1
    stored = await row(db_session, "certification_progress", certification.id)
    assert dataclasses.asdict(certification) == stored  # the view is the row, column for column
    assert (stored["user_id"], stored["report_id"]) == (user.id, report.id)
    assert (stored["status"], stored["documents_completed"], stored["notes"]) == (
        "not_started",
        [],
        "ask the CHA",
    )
    assert stored["started_at"] is None and stored["completed_at"] is None
    assert await metrics(db_session, user.id) is None


async def test_adding_a_completed_certification_stamps_and_counts_it_in_one_statement(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    async with count_statements(db_session) as seen:
        done = await _add(repo, report, status="completed", documents_completed=["invoice"])
    assert len(seen) == 1  # the counter moves in the INSERT's own statement
    assert done.started_at is not None and done.completed_at is not None
    started = await _add(repo, report, certification_id="CE", status="in_progress")
    stored = await row(db_session, "certification_progress", done.id)
    assert stored["started_at"] is not None and stored["completed_at"] is not None
    assert stored["documents_completed"] == ["invoice"]
    stored = await row(db_session, "certification_progress", started.id)
    assert stored["started_at"] is not None and stored["completed_at"] is None
    assert await metrics(db_session, user.id) == (0, 1, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("certification_id", None),
        ("certification_name", "n" * 256),
        ("certification_type", 7),
        ("status", "approved"),
        ("documents_completed", {"not": "a list"}),
        ("notes", "nul\x00"),
    ],
)
async def test_add_certification_rejects_bad_input_before_sql(
    db_session: AsyncSession, field: str, value: object
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await _add(ReportRepository(db_session), report, **{field: value})
    assert caught.value.field == field and seen == []
    assert await count_rows(db_session, "certification_progress", user_id=user.id) == 0


async def test_add_certification_to_another_users_report_writes_nothing(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ReportRepository(db_session)
    with pytest.raises(NotFoundError):
        await repo.add_certification(
            report.id,
            user_id=other.id,
            certification_id="FDA",
            certification_name="FDA",
            certification_type="mandatory",
            status="completed",
        )
    with pytest.raises(NotFoundError):
        await repo.add_certification(
            uuid.uuid4(),
            user_id=owner.id,
            certification_id="FDA",
            certification_name="FDA",
            certification_type="mandatory",
        )
    for user in (owner, other):
        assert await count_rows(db_session, "certification_progress", user_id=user.id) == 0
    assert (
        await metrics(db_session, other.id) is None and await metrics(db_session, owner.id) is None
    )


async def test_list_certifications_in_the_order_added(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report, empty = await make_report(db_session, user), await make_report(db_session, user)
    repo = ReportRepository(db_session)
    for name in ("FDA", "FSSAI", "APEDA"):
        await _add(repo, report, certification_id=name)
    async with count_statements(db_session) as seen:
        listed = await repo.list_certifications(report.id, user_id=user.id)
    assert len(seen) == 1
    assert [c.certification_id for c in listed] == ["FDA", "FSSAI", "APEDA"]
    assert await repo.list_certifications(empty.id, user_id=user.id) == []


async def test_list_certifications_of_another_users_report_is_not_found(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    await _add(ReportRepository(db_session), report)
    with pytest.raises(NotFoundError):
        await ReportRepository(db_session).list_certifications(report.id, user_id=other.id)
    with pytest.raises(NotFoundError):
        await ReportRepository(db_session).list_certifications(uuid.uuid4(), user_id=owner.id)


async def _set_dates(session: AsyncSession, certification_id: uuid.UUID, **values: Any) -> None:
    """Put a certification in a known state with dates from the past (now() is frozen)."""
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    await session.execute(
        text(f"UPDATE certification_progress SET {assignments} WHERE id = :id"),
        {"id": certification_id, **values},
    )


# (old status, old started_at set?, old completed_at set?, new status) ->
# (started_at: "kept" / "now" / None, completed_at: "kept" / "now" / None, counter change)
TRANSITIONS = [
    ("not_started", False, False, "in_progress", "now", None, 0),
    ("not_started", False, False, "completed", "now", "now", 1),
    ("in_progress", True, False, "in_progress", "kept", None, 0),
    ("in_progress", True, False, "completed", "kept", "now", 1),
    ("in_progress", True, False, "rejected", "kept", None, 0),
    ("completed", True, True, "completed", "kept", "kept", 0),
    ("completed", True, True, "in_progress", "kept", None, -1),
    ("completed", True, True, "rejected", "kept", None, -1),
    ("completed", True, True, "not_started", None, None, -1),
    ("rejected", True, False, "in_progress", "kept", None, 0),
]


@pytest.mark.parametrize(
    ("old", "had_start", "had_end", "new", "started", "ended", "change"), TRANSITIONS
)
async def test_status_changes_stamp_dates_and_keep_the_counter_true(
    db_session: AsyncSession,
    old: str,
    had_start: bool,
    had_end: bool,
    new: str,
    started: str | None,
    ended: str | None,
    change: int,
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    certification = await _add(repo, report, status=old)
    await _set_dates(
        db_session,
        certification.id,
        started_at=LONG_AGO if had_start else None,
        completed_at=LONG_AGO if had_end else None,
    )
    before = (await metrics(db_session, user.id) or (0, 0, 0))[1]
    async with count_statements(db_session) as seen:
        updated = await repo.update_certification(certification.id, user_id=user.id, status=new)
    assert len(seen) == 1  # the counter moves in the UPDATE's own statement
    stored = await row(db_session, "certification_progress", certification.id)
    now = (await db_session.execute(text("SELECT now()"))).scalar_one()
    expected = {"kept": LONG_AGO, "now": now, None: None}
    assert (stored["status"], stored["started_at"], stored["completed_at"]) == (
        new,
        expected[started],
        expected[ended],
    )
    assert (updated.status, updated.started_at, updated.completed_at) == (
        new,
        expected[started],
        expected[ended],
    )
    assert (await metrics(db_session, user.id) or (0, 0, 0))[1] == before + change
    assert (await metrics(db_session, user.id) or (0, 0, 0))[1] == (
        await true_counts(db_session, user.id)
    )[1]


async def test_notes_and_documents_change_without_touching_status_or_dates(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    certification = await _add(repo, report, status="completed", notes="old")
    await _set_dates(db_session, certification.id, started_at=LONG_AGO, completed_at=LONG_AGO)
    async with count_statements(db_session) as seen:
        await repo.update_certification(
            certification.id, user_id=user.id, documents_completed=["coo", "invoice"]
        )
    assert len(seen) == 1
    await repo.update_certification(certification.id, user_id=user.id, notes=None)
    stored = await row(db_session, "certification_progress", certification.id)
    assert stored["documents_completed"] == ["coo", "invoice"] and stored["notes"] is None
    assert (stored["status"], stored["started_at"], stored["completed_at"]) == (
        "completed",
        LONG_AGO,
        LONG_AGO,
    )
    assert await metrics(db_session, user.id) == (0, 1, 0)
    same = await repo.update_certification(certification.id, user_id=user.id)
    assert same.id == certification.id and same.notes is None


async def test_leaving_completed_never_drives_an_uncounted_counter_negative(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    certification = await _add(repo, report)
    await _set_dates(db_session, certification.id, status="completed")  # behind our back
    await repo.update_certification(certification.id, user_id=user.id, status="rejected")
    assert await metrics(db_session, user.id) is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "approved"}, "status"),
        ({"status": None}, "status"),
        ({"documents_completed": None}, "documents_completed"),
        ({"documents_completed": "coo"}, "documents_completed"),
        ({"notes": "x\x00"}, "notes"),
    ],
)
async def test_update_certification_rejects_bad_input_and_changes_nothing(
    db_session: AsyncSession, fields: dict[str, Any], field: str
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    certification = await _add(ReportRepository(db_session), report, status="completed")
    before = await row(db_session, "certification_progress", certification.id)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await ReportRepository(db_session).update_certification(
                certification.id, user_id=user.id, **fields
            )
    assert caught.value.field == field and seen == []
    assert await row(db_session, "certification_progress", certification.id) == before
    assert await metrics(db_session, user.id) == (0, 1, 0)


async def test_another_users_certification_is_not_found_and_unchanged(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ReportRepository(db_session)
    certification = await _add(repo, report, status="completed")
    before = await row(db_session, "certification_progress", certification.id)
    with pytest.raises(NotFoundError):
        await repo.update_certification(certification.id, user_id=other.id, status="rejected")
    with pytest.raises(NotFoundError):
        await repo.update_certification(certification.id, user_id=other.id)
    with pytest.raises(NotFoundError):
        await repo.get_certification(certification.id, user_id=other.id)
    with pytest.raises(NotFoundError):
        await repo.update_certification(uuid.uuid4(), user_id=owner.id, status="rejected")
    assert await row(db_session, "certification_progress", certification.id) == before
    assert await metrics(db_session, owner.id) == (0, 1, 0)
    assert await metrics(db_session, other.id) is None
    found = await repo.get_certification(certification.id, user_id=owner.id)
    assert found.status == "completed"
