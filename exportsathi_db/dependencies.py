"""FastAPI integration: one unit of work per request, committed before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
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


async def _error_response(_request: Request, exc: Exception) -> JSONResponse:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    headers = {"Retry-After": "1"} if getattr(exc, "retryable", False) else None
    body = {"detail": str(exc), "error": type(exc).__name__}
    return JSONResponse(body, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Answer this package's errors with their HTTP status (404, 409, 422, 503) instead of 500."""
    app.add_exception_handler(ExportSathiDBError, _error_response)
