"""Shared by ReportRepository and its collaborators: the acting user's scope, checks made
before any SQL, and how values are passed."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Iterable
from typing import Any, Literal, TypeAlias

from exportsathi_db.errors import InvalidDataError, NotFoundError
from exportsathi_db.repositories.base import check_id

# 1 if report $1 is user $2's (another user's report is a missing one).
OWNED_REPORT = "SELECT 1 FROM reports WHERE id = $1 AND user_id = $2"


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Literal[_Unset.UNSET] = _Unset.UNSET  # "leave as it is", unlike None ("clear it")
Unset: TypeAlias = Literal[_Unset.UNSET]


def owned(report_id: uuid.UUID, user_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """The checked ids of a statement scoped to the user's report: $1 the report, $2 the user."""
    return check_id("report_id", report_id), check_id("user_id", user_id)


def report_missing(report_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"report {report_id} not found")


def check_fields(fields: Iterable[str], allowed: frozenset[str]) -> None:
    """Reject keyword arguments that are not changeable columns, naming them."""
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidDataError(
            ", ".join(sorted(unknown)), f"cannot be set here; allowed: {', '.join(sorted(allowed))}"
        )


def json_param(value: Any) -> str | None:
    """A JSONB parameter as the connection's codec takes it: JSON text (None is SQL NULL).
    The value has been through `validated`, which refuses what JSON cannot hold."""
    return None if value is None else json.dumps(value)
