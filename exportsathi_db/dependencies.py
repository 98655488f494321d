"""FastAPI integration: one unit of work per request, committed before the response is sent."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.database import db_connection
from exportsathi_db.errors import (
    AlreadyExistsError,
    ConflictError,
    DatabaseUnavailableError,
    ExportSathiDBError,
    InvalidDataError,
    NotFoundError,
    QueryTimeoutError,
    ReadOnlyError,
)


async def get_db() -> AsyncIterator[AsyncSession]:
    """Yield a session; commit when the handler returns, roll back when it raises.

    Use it through `DbSession` (or `Depends(get_db, scope="function")`): with FastAPI's
    default request scope the commit would run after the response is sent, so a failed
    commit could follow a 2xx the client already received.
    """
    async with db_connection.session_scope() as session:
        yield session


async def get_read_db() -> AsyncIterator[AsyncSession]:
    """Yield a read-only session: on the replica, else (none, or down) on the primary."""
    async with db_connection.read_scope() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_db, scope="function")]
ReadDbSession = Annotated[AsyncSession, Depends(get_read_db, scope="function")]

_STATUS = (
    (NotFoundError, 404),
    (AlreadyExistsError, 409),
    (ConflictError, 409),
    (InvalidDataError, 422),
    (DatabaseUnavailableError, 503),
    (QueryTimeoutError, 503),
    (ReadOnlyError, 500),
)

# The `type` of a 422 item this package produces: stable, for code (the `msg` is for people).
INVALID_DATA = "invalid_data"

# A field path as the package names it: `email`, `messages[3].content`.
_FIELD_PATH = re.compile(r"[A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*")
_FIELD_STEP = re.compile(r"([A-Za-z_]\w*)|\[(\d+)\]")


class ErrorResponse(BaseModel):
    """The body of the 404, 409, 503 and 500 answers of `add_error_handlers`: FastAPI's
    `HTTPException` body (`{"detail": "..."}`) and the error's class."""

    detail: str = Field(description="What went wrong, for people.")
    error: str = Field(
        description="The class of the error (e.g. NotFoundError, AlreadyExistsError, "
        "DatabaseUnavailableError): stable, for code.",
        examples=["NotFoundError"],
    )


# Add to `FastAPI(responses=...)`, `APIRouter(responses=...)` or a route's `responses=`, so
# the answers of `add_error_handlers` are in the OpenAPI schema. 422 is not here: FastAPI
# already documents it (HTTPValidationError) on every route that takes parameters, and
# the handlers' 422 bodies have that shape; listing it here would replace FastAPI's schema.
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before running the unit of work again; sent when "
        "a retry can succeed.",
        "schema": {"type": "integer"},
    }
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorResponse,
        "description": "Not found: the row does not exist, or belongs to another user "
        "(NotFoundError).",
    },
    409: {
        "model": ErrorResponse,
        "description": "Conflict: a unique rule would be broken (AlreadyExistsError), or the "
        "state does not allow it (ConflictError), or the transaction lost a race with a "
        "concurrent one (TransactionConflictError, with Retry-After); the unit of work was "
        "rolled back.",
        "headers": _RETRY_AFTER,
    },
    503: {
        "model": ErrorResponse,
        "description": "The database is unavailable or a statement timed out "
        "(DatabaseUnavailableError and its kinds, QueryTimeoutError); the unit of work was "
        "rolled back: retry it after Retry-After seconds.",
        "headers": _RETRY_AFTER,
    },
}


def _location(field: str, request: Request) -> list[str | int]:
    """FastAPI's `loc` of a field the package names (a column, or e.g. `messages[3].content`).

    The package does not know where a value came from. A path parameter of that name is
    "path"; anything else is "body", where column values come from in a create or an
    update: a client reads `loc[0]` as the source and the rest as the field, as in
    FastAPI's own 422s. A name that is no field path (e.g. `$3 of row #2`) stays one step.
    """
    steps: list[str | int] = [field]
    if _FIELD_PATH.fullmatch(field):
        steps = [name or int(index) for name, index in _FIELD_STEP.findall(field)]
    source = "path" if steps[0] in request.path_params else "body"
    return [source, *steps]


async def _error_response(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    headers = {"Retry-After": "1"} if getattr(exc, "retryable", False) else None
    body: dict[str, Any]
    if isinstance(exc, InvalidDataError):  # FastAPI's HTTPValidationError
        item = {
            "type": INVALID_DATA,
            "loc": _location(exc.field, request),
            "msg": str(exc).removeprefix(f"{exc.field}: "),
        }
        body = {"detail": [item]}
    else:
        body = {"detail": str(exc), "error": type(exc).__name__}
    return JSONResponse(body, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Answer this package's errors with their HTTP status instead of a bare 500:

    - 422 (`InvalidDataError`): FastAPI's validation-error body (HTTPValidationError),
      `{"detail": [{"type": "invalid_data", "loc": ["body", "<field>"], "msg": "<what is
      allowed>"}]}`, with "path" instead of "body" for a path parameter of that name;
    - 404 (`NotFoundError`), 409 (`AlreadyExistsError`, `ConflictError`), 503
      (`DatabaseUnavailableError`, `QueryTimeoutError`) and 500 (any other error of this
      package): `ErrorResponse`, `{"detail": "...", "error": "<class>"}`; with a
      `Retry-After` header when the error is retryable (every 503, and a 409 for a
      `TransactionConflictError`).

    Pass `responses=ERROR_RESPONSES` to the app or router to document them in OpenAPI.
    """
    app.add_exception_handler(ExportSathiDBError, _error_response)
