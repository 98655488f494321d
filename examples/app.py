"""A complete FastAPI app on exportsathi_db: one unit of work per request, repositories only.

Run it with `uvicorn examples.app:app` (DATABASE_URL set, or the embedded default).
In a real app the acting user comes from authentication; here it is in the path.

The request models carry the schema's own rules (enums, column lengths, the password-hash
and e-mail formats), so a client generated from the OpenAPI schema can form valid requests.
The response bodies are small projections of the read models, the same as those of
examples/app_asyncpg.py (the benchmark's raw-asyncpg twin); never the password hash.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from exportsathi_db import (
    BusinessType,
    ChatRepository,
    CompanySize,
    DbSession,
    MessageRole,
    ReadDbSession,
    Report,
    ReportRepository,
    ReportStatus,
    User,
    UserRepository,
    add_error_handlers,
    db_connection,
)
from exportsathi_db.dependencies import ERROR_RESPONSES
from exportsathi_db.validation import EMAIL_PATTERN, PASSWORD_HASH_PATTERN


def json_schema_pattern(pattern: re.Pattern[str]) -> str:
    """A verbose-mode regex as one line for JSON Schema (which has no comments or layout).
    Enough for validation.py's patterns: no literal space or # inside a character class."""
    assert pattern.flags & re.VERBOSE
    return re.sub(r"\s+#[^\n]*|\s+", "", pattern.pattern)


# Whitespace to any of the three regex engines that read the patterns (Python's re in the
# package, Rust's regex in Pydantic, ECMAScript's in a client's JSON Schema validator), and
# NUL, which no text column takes.
NOT_TEXT = r"\x00\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def portable(pattern: str) -> str:
    """`pattern` with its digits (`\\d`) as 0-9 and its whitespace (`\\s`, `\\S`) spelled
    out: each engine has its own idea of both, so this is the form on which a client, FastAPI
    and the package agree. It matches a subset of what `pattern` matches in Python. Only
    the uses validation.py makes are handled: `\\d` and `\\S` outside character classes,
    `\\s` in negated ones."""
    out: list[str] = []
    negated: bool | None = None  # in a character class: is it negated?
    for piece in re.findall(r"\\.|\[\^?|.", pattern, flags=re.DOTALL):
        if negated is None and piece.startswith("["):
            negated = piece == "[^"
        elif negated is not None and piece == "]":
            negated = None
        elif piece == r"\d":
            assert negated is None
            piece = "[0-9]"
        elif piece == r"\S":
            assert negated is None
            piece = f"[^{NOT_TEXT}]"
        elif piece == r"\s":
            assert negated is True
            piece = NOT_TEXT
        out.append(piece)
    return "".join(out)


def length(column: Any) -> int:
    """The declared length of a String column of the models, e.g. `length(User.email)`."""
    return int(column.type.length)


# The rules the package checks before any SQL is sent (exportsathi_db.validation), and the
# columns' lengths (exportsathi_db.models), as constraints of the request models: taken
# from the package, so the schema cannot drift from the checks.
PASSWORD_HASH = portable(json_schema_pattern(PASSWORD_HASH_PATTERN))
EMAIL = portable(EMAIL_PATTERN.pattern)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    await db_connection.dispose()  # close the pool on the loop that used it


# `responses=ERROR_RESPONSES` documents the 404, 409 and 503 answers of the error handlers
# on every route (FastAPI documents 422 itself).
app = FastAPI(title="ExportSathi example", lifespan=lifespan, responses=ERROR_RESPONSES)
add_error_handlers(app)  # NotFoundError → 404, AlreadyExistsError → 409, InvalidDataError → 422


class Detail(BaseModel):
    """FastAPI's `HTTPException` body."""

    detail: str


# FastAPI answers a body it cannot even decode (not UTF-8) with 400, not 422: documented on
# the routes that read a body.
UNREADABLE_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": Detail, "description": "The body could not be read (e.g. not UTF-8)."}
}


class NewUser(BaseModel):
    email: str = Field(max_length=length(User.email), pattern=EMAIL)
    password_hash: str = Field(max_length=length(User.password_hash), pattern=PASSWORD_HASH)
    business_type: BusinessType
    company_size: CompanySize
    company_name: str | None = Field(default=None, max_length=length(User.company_name))


class UserCreated(BaseModel):
    """A new account as the API shows it: never the password hash."""

    id: uuid.UUID
    email: str


class NewReport(BaseModel):
    product_name: str = Field(max_length=length(Report.product_name))
    destination_country: str = Field(max_length=length(Report.destination_country))
    report_data: dict[str, Any]
    hs_code: str | None = Field(default=None, max_length=length(Report.hs_code))


class ReportCreated(BaseModel):
    id: uuid.UUID
    status: ReportStatus


class ReportPage(BaseModel):
    product_name: str
    hs_code: str | None
    certifications: list[str]
    documents: list[str]
    tasks: int


class ChatCreated(BaseModel):
    id: uuid.UUID


class Question(BaseModel):
    content: str


class Answer(BaseModel):
    answer: str


class Message(BaseModel):
    role: MessageRole
    content: str


# The response models are read off the repositories' read models (exportsathi_db.views)
# with `from_attributes`: only the fields named here are read, so nothing else can leak.


@app.post("/users", status_code=201, responses=UNREADABLE_BODY)
async def create_user(body: NewUser, session: DbSession) -> UserCreated:
    user = await UserRepository(session).create(**body.model_dump())
    return UserCreated.model_validate(user, from_attributes=True)


@app.post("/users/{user_id}/reports", status_code=201, responses=UNREADABLE_BODY)
async def create_report(user_id: uuid.UUID, body: NewReport, session: DbSession) -> ReportCreated:
    report = await ReportRepository(session).create(user_id=user_id, **body.model_dump())
    return ReportCreated.model_validate(report, from_attributes=True)


@app.get("/users/{user_id}/reports/{report_id}")
async def report_page(
    user_id: uuid.UUID, report_id: uuid.UUID, session: ReadDbSession
) -> ReportPage:
    report = await ReportRepository(session).get_full(report_id, user_id=user_id)
    return ReportPage(
        product_name=report.product_name,
        hs_code=report.hs_code,
        certifications=[c.certification_id for c in report.certifications],
        documents=[d.document_type for d in report.documents],
        tasks=len(report.action_plan),
    )


@app.post("/users/{user_id}/chats", status_code=201)
async def start_chat(
    user_id: uuid.UUID, session: DbSession, report_id: uuid.UUID | None = None
) -> ChatCreated:
    chat = await ChatRepository(session).create_session(user_id=user_id, report_id=report_id)
    return ChatCreated.model_validate(chat, from_attributes=True)


@app.post("/users/{user_id}/chats/{chat_id}/messages", status_code=201, responses=UNREADABLE_BODY)
async def ask(user_id: uuid.UUID, chat_id: uuid.UUID, body: Question, session: DbSession) -> Answer:
    chats = ChatRepository(session)
    await chats.add_message(chat_id, user_id=user_id, role="user", content=body.content)
    answer = f"For '{body.content}': start with your IEC and the destination's rules."
    await chats.add_message(chat_id, user_id=user_id, role="assistant", content=answer)
    return Answer(answer=answer)


@app.get("/users/{user_id}/chats/{chat_id}/messages")
async def history(user_id: uuid.UUID, chat_id: uuid.UUID, session: ReadDbSession) -> list[Message]:
    messages = await ChatRepository(session).history(chat_id, user_id=user_id, limit=50)
    return [Message.model_validate(m, from_attributes=True) for m in messages]
