"""A report's generated documents: adding (counted in documents_generated) and listing."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.repositories.reports import ReportRepository
from tests.factories import make_report, make_user
from tests.repositories.reports_helpers import count_rows, metrics, row
from tests.statements import count_statements

INVOICE = {"invoice_no": "EXP/2025/001", "lines": [{"item": "turmeric", "kg": 500}]}


async def test_add_document_stores_it_and_counts_it_in_one_statement(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    repo = ReportRepository(db_session)
    async with count_statements(db_session) as seen:
        document = await repo.add_document(
            report.id,
            user_id=user.id,
            document_type="commercial_invoice",
            document_data=INVOICE,
            pdf_url="https://files.example.in/inv.pdf",
            validation_results={"errors": []},
            is_valid=True,
        )
    assert len(seen) == 1  # the counter moves in the INSERT's own statement
    stored = await row(db_session, "generated_documents", document.id)
    assert dataclasses.asdict(document) == stored  # the view is the row, column for column
    assert (stored["user_id"], stored["report_id"]) == (user.id, report.id)
    assert stored["document_data"] == INVOICE and stored["validation_results"] == {"errors": []}
    assert (stored["pdf_url"], stored["editable_url"], stored["is_valid"]) == (
        "https://files.example.in/inv.pdf",
        None,
        True,
    )
    await repo.add_document(report.id, user_id=user.id, document_type="x", document_data={})
    assert await metrics(db_session, user.id) == (0, 0, 2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("document_type", None),
        ("document_type", "t" * 101),
        ("document_data", None),
        ("document_data", ["a", "list"]),
        ("document_data", {"bad": object()}),
        ("pdf_url", "u" * 501),
        ("validation_results", "ok"),
        ("is_valid", "yes"),
        ("is_valid", None),
    ],
)
async def test_add_document_rejects_bad_input_before_sql(
    db_session: AsyncSession, field: str, value: object
) -> None:
    user = await make_user(db_session)
    report = await make_report(db_session, user)
    fields: dict[str, Any] = {"document_type": "packing_list", "document_data": {}}
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await ReportRepository(db_session).add_document(
                report.id, user_id=user.id, **(fields | {field: value})
            )
    assert caught.value.field == field and seen == []
    assert await count_rows(db_session, "generated_documents", user_id=user.id) == 0
    assert await metrics(db_session, user.id) is None


async def test_add_document_to_another_users_report_writes_nothing(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ReportRepository(db_session)
    async with count_statements(db_session) as seen:
        with pytest.raises(NotFoundError):
            await repo.add_document(
                report.id, user_id=other.id, document_type="x", document_data={}
            )
    assert len(seen) == 1
    with pytest.raises(NotFoundError):
        await repo.add_document(uuid.uuid4(), user_id=owner.id, document_type="x", document_data={})
    for user in (owner, other):
        assert await count_rows(db_session, "generated_documents", user_id=user.id) == 0
    assert (
        await metrics(db_session, owner.id) is None and await metrics(db_session, other.id) is None
    )


async def test_list_documents_oldest_first_optionally_of_one_type(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    report, empty = await make_report(db_session, user), await make_report(db_session, user)
    repo = ReportRepository(db_session)
    kinds = ["invoice", "packing_list", "invoice", "shipping_bill"]
    for number, kind in enumerate(kinds):
        await repo.add_document(
            report.id, user_id=user.id, document_type=kind, document_data={"n": number}
        )
    async with count_statements(db_session) as seen:
        listed = await repo.list_documents(report.id, user_id=user.id)
    assert len(seen) == 1
    assert [(d.document_type, d.document_data["n"]) for d in listed] == [
        (kind, n) for n, kind in enumerate(kinds)
    ]
    invoices = await repo.list_documents(report.id, user_id=user.id, document_type="invoice")
    assert [d.document_data["n"] for d in invoices] == [0, 2]
    assert await repo.list_documents(report.id, user_id=user.id, document_type="coo") == []
    assert await repo.list_documents(empty.id, user_id=user.id) == []
    with pytest.raises(InvalidDataError, match="document_type"):
        await repo.list_documents(report.id, user_id=user.id, document_type="t" * 101)


async def test_list_documents_of_another_users_report_is_not_found(
    db_session: AsyncSession,
) -> None:
    owner, other = await make_user(db_session), await make_user(db_session)
    report = await make_report(db_session, owner)
    repo = ReportRepository(db_session)
    await repo.add_document(report.id, user_id=owner.id, document_type="x", document_data={})
    with pytest.raises(NotFoundError):
        await repo.list_documents(report.id, user_id=other.id)
    with pytest.raises(NotFoundError):
        await repo.list_documents(report.id, user_id=other.id, document_type="x")
    with pytest.raises(NotFoundError):
        await repo.list_documents(uuid.uuid4(), user_id=owner.id)
