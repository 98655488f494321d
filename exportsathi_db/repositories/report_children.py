"""A report's certifications and generated documents, reached through ReportRepository."""

from __future__ import annotations

import enum
import functools
import uuid
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, bindparam, case, func, null, select, update
from sqlalchemy.sql.dml import ReturningUpdate

from exportsathi_db.errors import NotFoundError
from exportsathi_db.models import CertificationProgress, GeneratedDocument
from exportsathi_db.models.base import validated
from exportsathi_db.models.enums import CertificationStatus
from exportsathi_db.repositories.base import Repository, bump_metrics, check_id, translate_errors
from exportsathi_db.repositories.report_common import (
    OWNED_REPORT,
    decrement_metrics,
    insert_under_report,
    new_row,
    owner,
    value_param,
    value_params,
)

Cert = CertificationProgress
Child = TypeVar("Child", CertificationProgress, GeneratedDocument)
COMPLETED = CertificationStatus.COMPLETED.value
# Columns a certification added in a started state gets stamped with the transaction's time.
_STAMPED_ON_ADD = {
    CertificationStatus.IN_PROGRESS.value: ("started_at",),
    COMPLETED: ("started_at", "completed_at"),
}


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Literal[_Unset.UNSET] = _Unset.UNSET  # "leave as it is", unlike None ("clear it")


def _stamps(status: str) -> dict[str, ColumnElement[Any]]:
    """started_at / completed_at for a certification entering `status` (SET sees old values).

    The first start is kept; completing stamps completed_at unless already completed;
    leaving completed clears it; going back to not_started clears both.
    """
    started = func.coalesce(Cert.started_at, func.now())
    if status == CertificationStatus.NOT_STARTED:
        return {"started_at": null(), "completed_at": null()}
    if status == CertificationStatus.IN_PROGRESS:
        return {"started_at": started, "completed_at": null()}
    if status == COMPLETED:
        kept = case((Cert.status == COMPLETED, Cert.completed_at), else_=func.now())
        return {"started_at": started, "completed_at": kept}
    return {"completed_at": null()}  # rejected: when it started stays true


# A certification of the acting user's (another user's = missing).
_SCOPE = (
    Cert.id == bindparam("scope_certification_id"),
    Cert.user_id == bindparam("scope_user_id"),
)


def _scope(certification_progress_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    return {
        "scope_certification_id": check_id("certification_progress_id", certification_progress_id),
        "scope_user_id": check_id("user_id", user_id),
    }


@functools.lru_cache(maxsize=32)
def _update_certification(
    names: tuple[str, ...], status: str | None
) -> ReturningUpdate[CertificationProgress, str]:
    """Lock the row while reading its old status, update it, return it with the old status."""
    old = (
        select(Cert.id, Cert.status.label("old_status")).where(*_SCOPE).with_for_update().cte("old")
    )
    values: dict[str, Any] = {name: value_param(Cert, name) for name in names}
    return (
        update(Cert)
        .where(Cert.id == old.c.id)
        .values(values | (_stamps(status) if status is not None else {}))
        .returning(Cert, old.c.old_status)
        .execution_options(populate_existing=True, synchronize_session=False)
    )


_GET_CERTIFICATION = select(Cert).where(*_SCOPE)


@functools.lru_cache(maxsize=8)
def _children(model: type[Child], by_type: bool = False) -> Select[uuid.UUID, Child]:
    """The owned report left-joined to its rows: no row = not the user's; one NULL = none."""
    report = OWNED_REPORT.subquery()
    joined = model.report_id == report.c.id
    if by_type:
        joined &= GeneratedDocument.document_type == value_param(GeneratedDocument, "document_type")
    return (
        select(report.c.id, model)
        .select_from(report)
        .outerjoin(model, joined)
        .order_by(model.id)
        .execution_options(populate_existing=True)
    )


class ReportChildrenMethods(Repository):
    """ReportRepository's certification and document methods, scoped to the acting user."""

    @translate_errors
    async def add_certification(
        self,
        report_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        certification_id: str,
        certification_name: str,
        certification_type: str,
        status: str = CertificationStatus.NOT_STARTED.value,
        documents_completed: list[Any] | None = None,
        notes: str | None = None,
    ) -> CertificationProgress:
        """Track a certification the report needs (1 statement; 2 when added completed)."""
        values = validated(
            Cert,
            {
                "certification_id": certification_id,
                "certification_name": certification_name,
                "certification_type": certification_type,
                "status": status,
                "documents_completed": [] if documents_completed is None else documents_completed,
                "notes": notes,
            },
        )
        stamped = _STAMPED_ON_ADD.get(status, ())
        params = new_row(report_id, user_id, values)
        statement = insert_under_report(Cert, tuple(values), stamped)
        certification: Cert | None = (await self.session.scalars(statement, params)).one_or_none()
        if certification is None:
            raise NotFoundError(f"report {report_id} not found")
        if status == COMPLETED:
            await bump_metrics(self.session, user_id, certifications_completed=1)
        return certification

    @translate_errors
    async def get_certification(
        self, certification_progress_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> CertificationProgress:
        """One certification of the user's, or `NotFoundError` (1 statement)."""
        params = _scope(certification_progress_id, user_id)
        certification = (await self.session.scalars(_GET_CERTIFICATION, params)).one_or_none()
        if certification is None:
            raise NotFoundError(f"certification {certification_progress_id} not found")
        return certification

    @translate_errors
    async def update_certification(
        self,
        certification_progress_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        status: str | Literal[_Unset.UNSET] = UNSET,
        notes: str | Literal[_Unset.UNSET] | None = UNSET,
        documents_completed: list[Any] | Literal[_Unset.UNSET] = UNSET,
    ) -> CertificationProgress:
        """Change status, notes or completed documents; status changes stamp the dates.

        The row is locked while its old status is read, so `certifications_completed`
        moves by exactly one per real transition even under concurrent updates
        (1 statement; 2 when the certification enters or leaves `completed`).
        """
        params = _scope(certification_progress_id, user_id)
        given = {"status": status, "notes": notes, "documents_completed": documents_completed}
        values = validated(Cert, {k: v for k, v in given.items() if v is not UNSET})
        if not values:
            return await self.get_certification(certification_progress_id, user_id=user_id)
        statement = _update_certification(tuple(values), values.get("status"))
        row = (await self.session.execute(statement, params | value_params(values))).one_or_none()
        if row is None:
            raise NotFoundError(f"certification {certification_progress_id} not found")
        certification: CertificationProgress = row[0]
        old_status: str = row[1]
        change = int(certification.status == COMPLETED) - int(old_status == COMPLETED)
        if change > 0:
            await bump_metrics(self.session, user_id, certifications_completed=1)
        elif change < 0:
            await decrement_metrics(self.session, user_id, certifications_completed=1)
        return certification

    @translate_errors
    async def list_certifications(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> list[CertificationProgress]:
        """The report's certifications in the order they were added (1 statement)."""
        rows = (await self.session.execute(_children(Cert), owner(report_id, user_id))).all()
        if not rows:
            raise NotFoundError(f"report {report_id} not found")
        return [certification for _, certification in rows if certification is not None]

    @translate_errors
    async def add_document(
        self,
        report_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        document_type: str,
        document_data: dict[str, Any],
        pdf_url: str | None = None,
        editable_url: str | None = None,
        validation_results: dict[str, Any] | None = None,
        is_valid: bool = False,
    ) -> GeneratedDocument:
        """Store a generated document and count it in `documents_generated` (2 statements)."""
        values = validated(
            GeneratedDocument,
            {
                "document_type": document_type,
                "document_data": document_data,
                "pdf_url": pdf_url,
                "editable_url": editable_url,
                "validation_results": validation_results,
                "is_valid": is_valid,
            },
        )
        params = new_row(report_id, user_id, values)
        statement = insert_under_report(GeneratedDocument, tuple(values))
        document: GeneratedDocument | None = (
            await self.session.scalars(statement, params)
        ).one_or_none()
        if document is None:
            raise NotFoundError(f"report {report_id} not found")
        await bump_metrics(self.session, user_id, documents_generated=1)
        return document

    @translate_errors
    async def list_documents(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID, document_type: str | None = None
    ) -> list[GeneratedDocument]:
        """The report's documents, oldest first, optionally of one type (1 statement)."""
        params = owner(report_id, user_id)
        if document_type is not None:
            params |= value_params(validated(GeneratedDocument, {"document_type": document_type}))
        statement = _children(GeneratedDocument, document_type is not None)
        rows = (await self.session.execute(statement, params)).all()
        if not rows:
            raise NotFoundError(f"report {report_id} not found")
        return [document for _, document in rows if document is not None]
