"""ReportRepository's reports: create, get, get_full and update against the real database."""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.models import Report
from exportsathi_db.repositories import reports as reports_module
from exportsathi_db.repositories.reports import ReportRepository
from exportsathi_db.views import (
    CertificationView,
    DocumentView,
    FullReportView,
    PlanTaskView,
    ReportView,
)
from tests.factories import make_report, make_user
from tests.repositories.reports_helpers import add_children, count_rows, metrics, new_report, row
from tests.statements import count_statements


async def test_create_copies_the_profile_and_counts_the_report_in_one_statement(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session, business_type="SaaS", company_size="Micro")
    repo = ReportRepository(db_session)
    async with count_statements(db_session) as seen:
        report = await new_report(repo, user, hs_code="1006.30", risk_score=40)
    assert len(seen) == 1
    assert report.id.version == 7 and report.status == "completed"
    stored = await row(db_session, "reports", report.id)
    assert stored["user_id"] == user.id
    assert (stored["business_type"], stored["company_size"]) == ("SaaS", "Micro")
    assert stored["monthly_volume"] == user.monthly_volume
    assert (stored["hs_code"], stored["risk_score"]) == ("1006.30", 40)
    assert stored["report_data"] == {"hs_code": "1006.30", "certifications": ["APEDA"]}
    assert await metrics(db_session, user.id) == (1, 0, 0)


async def test_create_keeps_given_profile_fields_and_every_optional_column(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    optional: dict[str, Any] = {
        "business_type": "Merchant",
        "company_size": "Medium",
        "monthly_volume": 0,
        "product_image_url": "https://cdn.example.in/rice.png",
        "ingredients": "rice",
        "bom": "rice, jute bag",
        "price_range": "1-2 USD/kg",
        "payment_mode": "LC",
        "hs_code": "1006.30",
        "hs_code_confidence": Decimal("87.50"),
        "risk_score": 0,
        "estimated_cost": Decimal("125000.00"),
        "estimated_timeline_days": 45,
        "status": "processing",
    }
    report = await new_report(ReportRepository(db_session), user, **optional)
    stored = await row(db_session, "reports", report.id)
    assert {key: stored[key] for key in optional} == optional
    assert await metrics(db_session, user.id) == (1, 0, 0)


async def test_create_for_a_missing_user_writes_nothing_and_keeps_the_transaction(
    db_session: AsyncSession,
) -> None:
    repo = ReportRepository(db_session)
    before = [await count_rows(db_session, table) for table in ("reports", "user_metrics")]
    async with count_statements(db_session) as seen:
        with pytest.raises(NotFoundError):
            await repo.create(
                user_id=uuid.uuid4(), product_name="Tea", destination_country="UK", report_data={}
            )
    assert len(seen) == 1
    assert [await count_rows(db_session, table) for table in ("reports", "user_metrics")] == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("product_name", None),
        ("product_name", "x" * 256),
        ("destination_country", None),
        ("report_data", ["not", "an", "object"]),
        ("report_data", {"nan": float("nan")}),
        ("report_data", None),
        ("business_type", "Farmer"),
        ("company_size", "Huge"),
        ("risk_score", 101),
        ("hs_code_confidence", Decimal("100.01")),
        ("monthly_volume", -1),
        ("status", "done"),
        ("status", None),
        ("hs_code", "nul\x00"),
        ("user_id", "not-a-uuid"),
    ],
)
async def test_create_rejects_bad_input_before_any_sql(
    db_session: AsyncSession, field: str, value: object
) -> None:
    user = await make_user(db_session)
    fields: dict[str, Any] = {
        "user_id": user.id,
        "product_name": "Tea",
        "destination_country": "UK",
        "report_data": {},
    } | {field: value}
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await ReportRepository(db_session).create(**fields)
    assert caught.value.field == field
    assert seen == []
    assert await count_rows(db_session, "reports", user_id=user.id) == 0
    assert await metrics(db_session, user.id) is None


async def test_get_and_get_or_none_see_only_the_owners_report(db_session: AsyncSession) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ReportRepository(db_session)
    async with count_statements(db_session) as seen:
        found = await repo.get(report.id, user_id=owner.id)
    assert len(seen) == 1 and found.id == report.id and found.product_name == report.product_name
    assert await repo.get_or_none(report.id, user_id=other.id) is None
    assert await repo.get_or_none(uuid.uuid4(), user_id=owner.id) is None
    with pytest.raises(NotFoundError):
        await repo.get(report.id, user_id=other.id)
    with pytest.raises(NotFoundError):
        await repo.get(uuid.uuid4(), user_id=owner.id)
    with pytest.raises(InvalidDataError, match="report_id"):
        await repo.get("1", user_id=owner.id)  # type: ignore[arg-type]


@pytest.mark.parametrize("children", [0, 1, 12])
async def test_get_full_loads_every_child_in_one_statement_whatever_their_number(
    db_session: AsyncSession, children: int
) -> None:
    user = await make_user(db_session)
    repo = ReportRepository(db_session)
    report = await new_report(repo, user)
    await add_children(repo, report, children)
    # asyncpg looks up the record[] type once per connection (3 statements of its own).
    await repo.get_full(report.id, user_id=user.id)
    async with count_statements(db_session) as seen:
        full = await repo.get_full(report.id, user_id=user.id)
    assert len(seen) == 1
    assert [c.certification_id for c in full.certifications] == [f"C{i}" for i in range(children)]
    assert [d.document_data["n"] for d in full.documents] == list(range(children))
    days = [task.day_number for task in full.action_plan]
    assert len(days) == children * 2 and days == sorted(days)


async def test_get_full_reads_the_children_the_database_holds_now(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    repo = ReportRepository(db_session)
    report = await new_report(repo, user)
    before = await repo.get_full(report.id, user_id=user.id)
    assert (before.certifications, before.documents, before.action_plan) == ((), (), ())
    await repo.add_document(report.id, user_id=user.id, document_type="coo", document_data={})
    await repo.save_action_plan(
        report.id, user_id=user.id, tasks=[{"task_id": "a", "day_number": 1, "task_title": "A"}]
    )
    again = await repo.get_full(report.id, user_id=user.id)
    assert [d.document_type for d in again.documents] == ["coo"]
    assert [t.task_id for t in again.action_plan] == ["a"]
    assert before.documents == ()  # a read model is a snapshot: it never changes


async def test_get_full_of_another_users_report_is_not_found_in_one_statement(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ReportRepository(db_session)
    async with count_statements(db_session) as seen:
        with pytest.raises(NotFoundError):
            await repo.get_full(report.id, user_id=other.id)
    assert len(seen) == 1
    with pytest.raises(NotFoundError):
        await repo.get_full(uuid.uuid4(), user_id=owner.id)


async def test_update_changes_the_fields_in_one_statement(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    repo = ReportRepository(db_session)
    report = await new_report(repo, user, status="processing")
    async with count_statements(db_session) as seen:
        updated = await repo.update(
            report.id,
            user_id=user.id,
            status="failed",
            hs_code=None,
            report_data={"error": "timeout"},
            estimated_cost=Decimal("10.50"),
        )
    assert len(seen) == 1 and updated.id == report.id
    assert (updated.status, updated.hs_code, updated.report_data) == (
        "failed",
        None,
        {"error": "timeout"},
    )
    assert updated.estimated_cost == Decimal("10.50") and updated.updated_at >= report.updated_at
    stored = await row(db_session, "reports", report.id)
    assert (stored["status"], stored["hs_code"]) == ("failed", None)
    assert stored["report_data"] == {"error": "timeout"}
    assert stored["estimated_cost"] == Decimal("10.50")
    assert stored["product_name"] == "Basmati rice"


async def test_update_with_no_fields_returns_the_report_unchanged(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    same = await ReportRepository(db_session).update(report.id, user_id=user.id)
    assert same.id == report.id
    assert (await row(db_session, "reports", report.id))["product_name"] == report.product_name


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"id": uuid.uuid4()}, "id"),
        ({"created_at": None}, "created_at"),
        ({"updated_at": None}, "updated_at"),
        ({"colour": "red"}, "colour"),
        ({"product_name": None}, "product_name"),
        ({"status": "done"}, "status"),
        ({"risk_score": -1}, "risk_score"),
        ({"report_data": "text"}, "report_data"),
    ],
)
async def test_update_rejects_bad_fields_and_changes_nothing(
    db_session: AsyncSession, fields: dict[str, Any], named: str
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    before = await row(db_session, "reports", report.id)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await ReportRepository(db_session).update(report.id, user_id=user.id, **fields)
    assert caught.value.field == named and seen == []
    assert await row(db_session, "reports", report.id) == before


async def test_update_of_another_users_report_is_not_found_and_changes_nothing(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    before = await row(db_session, "reports", report.id)
    repo = ReportRepository(db_session)
    with pytest.raises(NotFoundError):
        await repo.update(report.id, user_id=other.id, status="failed")
    with pytest.raises(NotFoundError):
        await repo.update(report.id, user_id=other.id)
    assert await row(db_session, "reports", report.id) == before


async def test_create_copies_the_profile_as_the_session_holds_it(db_session: AsyncSession) -> None:
    user = await make_user(db_session, company_size="Small")
    user.company_size = "Medium"  # not flushed yet: the create flushes it first, as the ORM did
    report = await new_report(ReportRepository(db_session), user)
    assert report.company_size == "Medium"
    assert (await row(db_session, "reports", report.id))["company_size"] == "Medium"


async def test_reads_flush_pending_orm_changes_first(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user, status="processing")
    repo = ReportRepository(db_session)
    report.status = "failed"  # not flushed: the read flushes it first, as an ORM query would
    assert (await repo.get(report.id, user_id=user.id)).status == "failed"
    assert [r.status for r in (await repo.list_for_user(user.id)).items] == ["failed"]
    report.status = "completed"
    with db_session.no_autoflush:  # the caller's choice: the database's values are read
        assert (await repo.get(report.id, user_id=user.id)).status == "failed"


async def test_reads_return_frozen_read_models_and_leave_the_session_alone(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    repo = ReportRepository(db_session)
    report = await new_report(repo, user)
    await add_children(repo, report, 1)
    page = await repo.list_for_user(user.id)
    full = await repo.get_full(report.id, user_id=user.id)
    assert type(report) is ReportView and [type(r) for r in page.items] == [ReportView]
    assert isinstance(full, FullReportView) and isinstance(full, ReportView)
    assert [type(c) for c in full.certifications] == [CertificationView]
    assert [type(d) for d in full.documents] == [DocumentView]
    assert {type(t) for t in full.action_plan} == {PlanTaskView}
    assert page.items == [report]
    assert {f.name: getattr(full, f.name) for f in dataclasses.fields(ReportView)} == (
        dataclasses.asdict(report)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.status = "failed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.documents[0].is_valid = True  # type: ignore[misc]
    assert not hasattr(full, "__dict__")  # slotted
    assert list(db_session.identity_map.values()) == [user]  # nothing of the repository's


async def test_a_full_report_serialises_as_a_response_model(db_session: AsyncSession) -> None:
    """What FastAPI does with a `response_model`: pydantic validates and dumps the dataclass."""
    user = await make_user(db_session)
    repo = ReportRepository(db_session)
    report = await new_report(repo, user, estimated_cost=Decimal("12.50"))
    await add_children(repo, report, 1)
    full = await repo.get_full(report.id, user_id=user.id)
    adapter = TypeAdapter(FullReportView)
    dumped = adapter.dump_python(full, mode="json")
    assert dumped["id"] == str(report.id) and dumped["estimated_cost"] == "12.50"
    assert dumped["documents"][0]["document_data"] == {"n": 0}
    assert dumped["action_plan"][0]["completed"] is False
    assert adapter.validate_python(adapter.dump_python(full)) == full


def test_public_children_methods_keep_their_collaborators_signatures() -> None:
    """ReportRepository's certification, document and plan methods only hand over to its
    collaborators: same parameters, same defaults, same annotations."""
    repo = ReportRepository(None)  # type: ignore[arg-type]
    delegates: dict[str, Callable[..., Any]] = {
        "add_certification": repo.certifications.add,
        "get_certification": repo.certifications.get,
        "update_certification": repo.certifications.update,
        "list_certifications": repo.certifications.of_report,
        "add_document": repo.documents.add,
        "list_documents": repo.documents.of_report,
        "save_action_plan": repo.plan.save,
        "complete_task": repo.plan.complete_task,
        "get_action_plan": repo.plan.get,
    }
    for name, collaborator in delegates.items():
        assert inspect.signature(getattr(repo, name)) == inspect.signature(collaborator), name


def test_create_and_update_cover_every_column_but_the_fixed_ones() -> None:
    fixed = {"id", "user_id", "created_at", "updated_at"}
    assert set(reports_module.SETTABLE) == set(Report.__table__.columns.keys()) - fixed
    assert [f.name for f in dataclasses.fields(ReportView)] == list(Report.__table__.columns.keys())
