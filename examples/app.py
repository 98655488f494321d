"""A complete FastAPI app on exportsathi_db: one unit of work per request, repositories only.

Run it with `uvicorn examples.app:app` (DATABASE_URL set, or the embedded default).
In a real app the acting user comes from authentication; here it is in the path.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from exportsathi_db import (
    ChatRepository,
    DbSession,
    ReadDbSession,
    ReportRepository,
    UserRepository,
    add_error_handlers,
    db_connection,
)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    await db_connection.dispose()  # close the pool on the loop that used it


app = FastAPI(title="ExportSathi example", lifespan=lifespan)
add_error_handlers(app)  # NotFoundError → 404, AlreadyExistsError → 409, InvalidDataError → 422


class NewUser(BaseModel):
    email: str
    password_hash: str
    business_type: str
    company_size: str
    company_name: str | None = None


class NewReport(BaseModel):
    product_name: str
    destination_country: str
    report_data: dict[str, Any]
    hs_code: str | None = None


class Question(BaseModel):
    content: str


@app.post("/users", status_code=201)
async def create_user(body: NewUser, session: DbSession) -> dict[str, Any]:
    user = await UserRepository(session).create(**body.model_dump())
    return {"id": str(user.id), "email": user.email}


@app.post("/users/{user_id}/reports", status_code=201)
async def create_report(user_id: uuid.UUID, body: NewReport, session: DbSession) -> dict[str, Any]:
    report = await ReportRepository(session).create(user_id=user_id, **body.model_dump())
    return {"id": str(report.id), "status": report.status}


@app.get("/users/{user_id}/reports/{report_id}")
async def report_page(user_id: uuid.UUID, report_id: uuid.UUID, session: ReadDbSession) -> Any:
    report = await ReportRepository(session).get_full(report_id, user_id=user_id)
    return {
        "product_name": report.product_name,
        "hs_code": report.hs_code,
        "certifications": [c.certification_id for c in report.certifications],
        "documents": [d.document_type for d in report.documents],
        "tasks": len(report.action_plan),
    }


@app.post("/users/{user_id}/chats", status_code=201)
async def start_chat(
    user_id: uuid.UUID, session: DbSession, report_id: uuid.UUID | None = None
) -> dict[str, str]:
    chat = await ChatRepository(session).create_session(user_id=user_id, report_id=report_id)
    return {"id": str(chat.id)}


@app.post("/users/{user_id}/chats/{chat_id}/messages", status_code=201)
async def ask(
    user_id: uuid.UUID, chat_id: uuid.UUID, body: Question, session: DbSession
) -> dict[str, str]:
    chats = ChatRepository(session)
    await chats.add_message(chat_id, user_id=user_id, role="user", content=body.content)
    answer = f"For '{body.content}': start with your IEC and the destination's rules."
    await chats.add_message(chat_id, user_id=user_id, role="assistant", content=answer)
    return {"answer": answer}


@app.get("/users/{user_id}/chats/{chat_id}/messages")
async def history(user_id: uuid.UUID, chat_id: uuid.UUID, session: ReadDbSession) -> Any:
    messages = await ChatRepository(session).history(chat_id, user_id=user_id, limit=50)
    return [{"role": m.role, "content": m.content} for m in messages]
