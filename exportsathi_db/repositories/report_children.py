"""A report's certifications and generated documents: collaborators of ReportRepository,
which exposes their methods under its public names (`add_certification`, `list_documents`…).

Each change and its effect on the owner's `user_metrics` counters is one statement: the
counter step is a CTE from `metrics`. Children are inserted by `INSERT … SELECT FROM reports`
scoped to the acting user, so another user's report inserts nothing and fails nothing.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from exportsathi_db.errors import NotFoundError
from exportsathi_db.models import CertificationProgress, GeneratedDocument, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.models.enums import CertificationStatus
from exportsathi_db.repositories import executor, metrics
from exportsathi_db.repositories.base import Repository, check_id
from exportsathi_db.repositories.report_common import (
    UNSET,
    Unset,
    json_param,
    owned,
    report_missing,
)
from exportsathi_db.views.base import column_list
from exportsathi_db.views.reports import CertificationView, DocumentView

NOT_STARTED = CertificationStatus.NOT_STARTED.value
IN_PROGRESS = CertificationStatus.IN_PROGRESS.value
COMPLETED = CertificationStatus.COMPLETED.value
REJECTED = CertificationStatus.REJECTED.value

_CERT = column_list(CertificationView)
_DOC = column_list(DocumentView)
# The values a new certification / document takes, in the order of their $n parameters.
CERTIFICATION_CREATED = (
    "certification_id",
    "certification_name",
    "certification_type",
    "status",
    "documents_completed",
    "notes",
)
DOCUMENT_CREATED = (
    "document_type",
    "document_data",
    "pdf_url",
    "editable_url",
    "validation_results",
    "is_valid",
)
_COUNT_COMPLETED = metrics.add_cte(
    "counted",
    "certifications_completed",
    rows="new",
    id_param="$4",
    where=f"status = '{COMPLETED}'",
)
_COUNT_DOCUMENT = metrics.add_cte("counted", "documents_generated", rows="new", id_param="$4")
# Report $2 if user $3 owns it, with the user and the report locked as the foreign-key checks
# lock them, but now rather than at the end of the statement, after the counter step: every
# statement locks users, then reports, then certifications, then user_metrics, the order in
# which deleting a report or a user takes them (any other order can deadlock with those).
_UNDER_REPORT = """FROM users u JOIN reports r ON r.user_id = u.id
    WHERE r.id = $2 AND u.id = $3 FOR KEY SHARE"""

# $1 a new id, $2 the report, $3 the user, $4 a new metrics row id, $5… the values. A
# certification added started is stamped started (and completed) now, and counted if completed.
ADD_CERTIFICATION = f"""WITH new AS (
    INSERT INTO certification_progress (id, user_id, report_id, certification_id,
        certification_name, certification_type, status, documents_completed, notes,
        started_at, completed_at)
    SELECT $1::uuid, r.user_id, r.id, $5::text, $6::text, $7::text, $8::text, $9::jsonb,
        $10::text,
        CASE WHEN $8::text IN ('{IN_PROGRESS}', '{COMPLETED}') THEN now() END,
        CASE WHEN $8::text = '{COMPLETED}' THEN now() END
    {_UNDER_REPORT}
    RETURNING {_CERT}
), {_COUNT_COMPLETED}
SELECT {_CERT} FROM new"""
# $1 the certification, $2 the user.
GET_CERTIFICATION = f"SELECT {_CERT} FROM certification_progress WHERE id = $1 AND user_id = $2"
# The report's certifications: no row = not the user's report; one all-NULL row = none.
LIST_CERTIFICATIONS = f"""SELECT {column_list(CertificationView, "c")}
FROM reports r LEFT JOIN certification_progress c ON c.report_id = r.id
WHERE r.id = $1 AND r.user_id = $2 ORDER BY c.id"""


def _stamps(status: str) -> list[str]:
    """started_at / completed_at for a certification entering status `status` (SET sees the
    old values): the first start is kept; completing stamps completed_at unless already
    completed; leaving completed clears it; back to not_started clears both; rejected keeps
    when it started."""
    started = f"""started_at = CASE {status}::text WHEN '{NOT_STARTED}' THEN NULL
        WHEN '{REJECTED}' THEN c.started_at ELSE coalesce(c.started_at, now()) END"""
    completed = f"""completed_at = CASE WHEN {status}::text <> '{COMPLETED}' THEN NULL
        WHEN c.status = '{COMPLETED}' THEN c.completed_at ELSE now() END"""
    return [started, completed]


_COUNT_ENTERED = metrics.add_cte(
    "counted",
    "certifications_completed",
    rows="new",
    id_param="$3",
    where=f"status = '{COMPLETED}' AND old_status <> '{COMPLETED}'",
)
_UNCOUNT_LEFT = metrics.subtract_cte(
    "uncounted",
    "certifications_completed",
    rows="new",
    where=f"old_status = '{COMPLETED}' AND status <> '{COMPLETED}'",
)


@functools.lru_cache(maxsize=16)
def update_certification_sql(names: tuple[str, ...]) -> str:
    """$1 the certification, $2 the user, $3 a new metrics row id, $4… the values of `names`.

    The row is locked while its old status is read, so `certifications_completed` moves by
    exactly one per real transition (in the same statement), even under concurrent updates.
    """
    params = {name: f"${n}" for n, name in enumerate(names, start=4)}
    assigned = [
        f"{name} = {param}::text" if name == "status" else f"{name} = {param}"
        for name, param in params.items()
    ]
    if "status" in params:
        assigned += _stamps(params["status"])
    return f"""WITH old AS (
    SELECT id, status FROM certification_progress WHERE id = $1 AND user_id = $2 FOR UPDATE
), new AS (
    UPDATE certification_progress AS c SET {", ".join(assigned)}
    FROM old WHERE c.id = old.id
    RETURNING {column_list(CertificationView, "c")}, old.status AS old_status
), {_COUNT_ENTERED}, {_UNCOUNT_LEFT}
SELECT {_CERT} FROM new"""


# $1 a new id, $2 the report, $3 the user, $4 a new metrics row id, $5… the values.
ADD_DOCUMENT = f"""WITH new AS (
    INSERT INTO generated_documents (id, user_id, report_id, document_type, document_data,
        pdf_url, editable_url, validation_results, is_valid)
    SELECT $1::uuid, r.user_id, r.id, $5::text, $6::jsonb, $7::text, $8::text, $9::jsonb,
        $10::boolean
    {_UNDER_REPORT}
    RETURNING {_DOC}
), {_COUNT_DOCUMENT}
SELECT {_DOC} FROM new"""
# The report's documents (of type $3): no row = not the user's report; one all-NULL row = none.
_LIST_DOCUMENTS = f"""SELECT {column_list(DocumentView, "c")}
FROM reports r LEFT JOIN generated_documents c ON c.report_id = r.id{{}}
WHERE r.id = $1 AND r.user_id = $2 ORDER BY c.id"""
LIST_DOCUMENTS = _LIST_DOCUMENTS.format("")
LIST_DOCUMENTS_OF_TYPE = _LIST_DOCUMENTS.format(" AND c.document_type = $3")


class Certifications(Repository):
    """The certifications a report needs, scoped to the acting user."""

    async def add(
        self,
        report_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        certification_id: str,
        certification_name: str,
        certification_type: str,
        status: str = NOT_STARTED,
        documents_completed: list[Any] | None = None,
        notes: str | None = None,
    ) -> CertificationView:
        """Track a certification the report needs, counted if added completed (1 statement)."""
        report_id, user_id = owned(report_id, user_id)
        values = validated(
            CertificationProgress,
            {
                "certification_id": certification_id,
                "certification_name": certification_name,
                "certification_type": certification_type,
                "status": status,
                "documents_completed": [] if documents_completed is None else documents_completed,
                "notes": notes,
            },
        )
        values["documents_completed"] = json_param(values["documents_completed"])
        args = (values[name] for name in CERTIFICATION_CREATED)
        row = await executor.fetchrow(
            self.session, ADD_CERTIFICATION, new_id(), report_id, user_id, new_id(), *args
        )
        if row is None:
            raise report_missing(report_id)
        return CertificationView(*row)

    async def get(
        self, certification_progress_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> CertificationView:
        """One certification of the user's, or `NotFoundError` (1 statement)."""
        row = await executor.fetchrow(
            self.session,
            GET_CERTIFICATION,
            check_id("certification_progress_id", certification_progress_id),
            check_id("user_id", user_id),
        )
        if row is None:
            raise _certification_missing(certification_progress_id)
        return CertificationView(*row)

    async def update(
        self,
        certification_progress_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        status: str | Unset = UNSET,
        notes: str | Unset | None = UNSET,
        documents_completed: list[Any] | Unset = UNSET,
    ) -> CertificationView:
        """Change status, notes or completed documents; status changes stamp the dates and
        keep `certifications_completed` true (1 statement)."""
        check_id("certification_progress_id", certification_progress_id)
        check_id("user_id", user_id)
        given = {"status": status, "notes": notes, "documents_completed": documents_completed}
        values = validated(
            CertificationProgress, {k: v for k, v in given.items() if v is not UNSET}
        )
        if not values:
            return await self.get(certification_progress_id, user_id=user_id)
        if "documents_completed" in values:
            values["documents_completed"] = json_param(values["documents_completed"])
        names = tuple(sorted(values))
        row = await executor.fetchrow(
            self.session,
            update_certification_sql(names),
            certification_progress_id,
            user_id,
            new_id(),
            *(values[name] for name in names),
        )
        if row is None:
            raise _certification_missing(certification_progress_id)
        return CertificationView(*row)

    async def of_report(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> list[CertificationView]:
        """The report's certifications in the order they were added (1 statement)."""
        rows = await executor.fetch(self.session, LIST_CERTIFICATIONS, *owned(report_id, user_id))
        if not rows:
            raise report_missing(report_id)
        return [CertificationView(*row) for row in rows if row[0] is not None]


class Documents(Repository):
    """A report's generated documents, scoped to the acting user."""

    async def add(
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
    ) -> DocumentView:
        """Store a generated document and count it in `documents_generated` (1 statement)."""
        report_id, user_id = owned(report_id, user_id)
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
        values["document_data"] = json_param(values["document_data"])
        values["validation_results"] = json_param(values["validation_results"])
        args = (values[name] for name in DOCUMENT_CREATED)
        row = await executor.fetchrow(
            self.session, ADD_DOCUMENT, new_id(), report_id, user_id, new_id(), *args
        )
        if row is None:
            raise report_missing(report_id)
        return DocumentView(*row)

    async def of_report(
        self, report_id: uuid.UUID, *, user_id: uuid.UUID, document_type: str | None = None
    ) -> list[DocumentView]:
        """The report's documents, oldest first, optionally of one type (1 statement)."""
        scope = owned(report_id, user_id)
        if document_type is None:
            rows = await executor.fetch(self.session, LIST_DOCUMENTS, *scope)
        else:
            validated(GeneratedDocument, {"document_type": document_type})
            rows = await executor.fetch(self.session, LIST_DOCUMENTS_OF_TYPE, *scope, document_type)
        if not rows:
            raise report_missing(report_id)
        return [DocumentView(*row) for row in rows if row[0] is not None]


def _certification_missing(certification_progress_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"certification {certification_progress_id} not found")
