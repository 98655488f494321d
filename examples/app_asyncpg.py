"""examples/app.py hand-written on raw asyncpg: the HTTP benchmark's baseline.

The same FastAPI routes, request models (imported from examples/app.py), response bodies and
status codes, and the same SQL statements and transactions per request as examples/app.py
sends through exportsathi_db (the statements are imported from the repositories, so the
server's work is identical): `BEGIN … COMMIT` for a writing route, `BEGIN READ ONLY …
ROLLBACK` for a reading one, committed before the response is sent. What is left out is what
the package adds in Python: its unit of work on SQLAlchemy's session, its checks beyond the
request model, read models, error translation. tests/test_benchmarks_smoke.py checks that
both apps answer the same requests alike.

Run it with `uvicorn examples.app_asyncpg:app` (DATABASE_URL set). The pool is 10..20
connections unless DB_POOL_SIZE / DB_MAX_OVERFLOW say otherwise (as for examples/app.py), and
it sends no reset query when a connection goes back (SQLAlchemy's pool sends none either).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
import uuid_utils.compat as uuid_utils
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from examples.app import NewReport, NewUser, Question  # the same request bodies and checks
from exportsathi_db.repositories import chat_sql, reports, users

CREATE_USER = users.INSERT  # $1 id, $2 email, $3 hash, $4 type, $5 size, $6 name, $7 volume
CREATE_REPORT = reports.INSERT  # $1 id, $2 user, $3 metrics row id, $4… reports.SETTABLE
SETTABLE = tuple(reports.SETTABLE)
GET_FULL = reports.FULL  # $1 report, $2 user: the report's columns, then three arrays
CREATE_CHAT = chat_sql.CREATE_SESSION  # $1 id, $2 user, $3 report, $4 context, $5 ttl
ADD_MESSAGE = chat_sql.ADD_MESSAGE  # $1 chat, $2 user, $3 id, $4 role, $5 content, $6 sources
HISTORY = chat_sql.HISTORY  # $1 chat, $2 user, $3 limit: (anchor, id, session_id, role, …)
CHAT_TTL = timedelta(hours=24)
CERTIFICATION_ID = 3  # certification_progress.certification_id in a ROW of GET_FULL
DOCUMENT_TYPE = 3  # generated_documents.document_type in a ROW of GET_FULL


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )


async def no_reset(_conn: asyncpg.Connection) -> None:
    """No reset query on release (an open transaction is still rolled back by asyncpg)."""


async def create_pool(url: str) -> asyncpg.Pool:
    """The app's pool for a database URL (SQLAlchemy's `postgresql+asyncpg://` form too)."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    size = int(os.environ.get("DB_POOL_SIZE", "10"))
    overflow = int(os.environ.get("DB_MAX_OVERFLOW", "10"))
    created: asyncpg.Pool = await asyncpg.create_pool(
        dsn, min_size=size, max_size=size + overflow, init=init_connection, reset=no_reset
    )
    return created


pool: asyncpg.Pool | None = None  # set by the lifespan


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await create_pool(os.environ["DATABASE_URL"])
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(title="ExportSathi example on raw asyncpg", lifespan=lifespan)


@app.exception_handler(NotFound)
async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": "NotFoundError"}, status_code=404)


@app.exception_handler(Conflict)
async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": "AlreadyExistsError"}, status_code=409)


async def get_conn() -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction: committed when the handler returns, else rolled back."""
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def get_read_conn() -> AsyncIterator[asyncpg.Connection]:
    """A connection in a read-only transaction, rolled back at the end."""
    assert pool is not None
    async with pool.acquire() as conn:
        tx = conn.transaction(readonly=True)
        await tx.start()
        try:
            yield conn
        finally:
            await tx.rollback()


Conn = Annotated[asyncpg.Connection, Depends(get_conn, scope="function")]
ReadConn = Annotated[asyncpg.Connection, Depends(get_read_conn, scope="function")]


class UserCreated(BaseModel):
    id: uuid.UUID
    email: str


class ReportCreated(BaseModel):
    id: uuid.UUID
    status: str


class ReportPage(BaseModel):
    product_name: str
    hs_code: str | None
    certifications: list[str]
    documents: list[str]
    tasks: int


class ChatCreated(BaseModel):
    id: uuid.UUID


class Answer(BaseModel):
    answer: str


class Message(BaseModel):
    role: str
    content: str


@app.post("/users", status_code=201)
async def create_user(body: NewUser, conn: Conn) -> UserCreated:
    row = await conn.fetchrow(
        CREATE_USER,
        uuid_utils.uuid7(),
        body.email,
        body.password_hash,
        body.business_type,
        body.company_size,
        body.company_name,
        None,
    )
    if row is None:
        raise Conflict("email: an account with this email already exists")
    return UserCreated(id=row["id"], email=row["email"])


@app.post("/users/{user_id}/reports", status_code=201)
async def create_report(user_id: uuid.UUID, body: NewReport, conn: Conn) -> ReportCreated:
    given = body.model_dump()
    args = [given.get(name) for name in SETTABLE]
    args[SETTABLE.index("status")] = "completed"
    row = await conn.fetchrow(CREATE_REPORT, uuid_utils.uuid7(), user_id, uuid_utils.uuid7(), *args)
    if row is None:
        raise NotFound(f"user {user_id} not found")
    return ReportCreated(id=row["id"], status=row["status"])


@app.get("/users/{user_id}/reports/{report_id}")
async def report_page(user_id: uuid.UUID, report_id: uuid.UUID, conn: ReadConn) -> ReportPage:
    row = await conn.fetchrow(GET_FULL, report_id, user_id)
    if row is None:
        raise NotFound(f"report {report_id} not found")
    certifications, documents, tasks = row[-3], row[-2], row[-1]
    return ReportPage(
        product_name=row["product_name"],
        hs_code=row["hs_code"],
        certifications=[c[CERTIFICATION_ID] for c in certifications],
        documents=[d[DOCUMENT_TYPE] for d in documents],
        tasks=len(tasks),
    )


@app.post("/users/{user_id}/chats", status_code=201)
async def start_chat(
    user_id: uuid.UUID, conn: Conn, report_id: uuid.UUID | None = None
) -> ChatCreated:
    row = await conn.fetchrow(CREATE_CHAT, uuid_utils.uuid7(), user_id, report_id, None, CHAT_TTL)
    if row is None:
        raise NotFound(
            f"{'user' if report_id is None else 'report'} {report_id or user_id} not found"
        )
    return ChatCreated(id=row["id"])


@app.post("/users/{user_id}/chats/{chat_id}/messages", status_code=201)
async def ask(user_id: uuid.UUID, chat_id: uuid.UUID, body: Question, conn: Conn) -> Answer:
    args = (uuid_utils.uuid7(), "user", body.content, None)
    if await conn.fetchrow(ADD_MESSAGE, chat_id, user_id, *args) is None:
        raise NotFound(f"chat session {chat_id} not found (or expired)")
    answer = f"For '{body.content}': start with your IEC and the destination's rules."
    args = (uuid_utils.uuid7(), "assistant", answer, None)
    if await conn.fetchrow(ADD_MESSAGE, chat_id, user_id, *args) is None:
        raise NotFound(f"chat session {chat_id} not found (or expired)")
    return Answer(answer=answer)


@app.get("/users/{user_id}/chats/{chat_id}/messages")
async def history(user_id: uuid.UUID, chat_id: uuid.UUID, conn: ReadConn) -> list[Message]:
    rows = await conn.fetch(HISTORY, chat_id, user_id, 50)
    if not rows:
        raise NotFound(f"chat session {chat_id} not found (or expired)")
    if rows[0][1] is None:  # the session has no messages
        return []
    return [Message(role=row["role"], content=row["content"]) for row in reversed(rows)]
