"""The data every scenario works on, made through the public API before any timing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import text

from exportsathi_db import ChatRepository, DatabaseConnection, ReportRepository, UserRepository

REQUEST_SCENARIOS = ("login", "dashboard", "new_report", "report_page", "chat_turn")
# Timed too, for repo and raw asyncpg only: the old login, get_by_email then record_login.
OLD_LOGIN = "login_two_statements"
BULK_SCENARIOS = ("save_action_plan", "add_messages")
PASSWORD_HASH = "$2b$12$" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
CERTIFICATIONS = ["FDA", "CE", "REACH", "BIS", "ZED", "SOFTEX", "FSSAI", "APEDA", "IEC", "ISO"]
DOCUMENTS = ["commercial_invoice", "packing_list", "shipping_bill", "origin", "bill_of_lading"]
# A realistic ~2 KB report: what the report generator stores whole in reports.report_data.
REPORT_DATA: dict[str, Any] = {
    "summary": "Organic turmeric powder to the United States: FDA facility registration, "
    "FSSAI export licence and APEDA RCMC are required before the first shipment.",
    "hs_code": {"code": "0910.30", "confidence": 92.5, "alternatives": ["0910.99", "0910.20"]},
    "certifications": [
        {"id": c, "priority": i % 3, "weeks": 2 + i} for i, c in enumerate(CERTIFICATIONS)
    ],
    "risks": [{"name": f"risk {i}", "level": "medium", "mitigation": "x" * 40} for i in range(12)],
    "costs": {"registration": 42000, "testing": 18500, "logistics": 96000, "currency": "INR"},
}
assert 1800 <= len(json.dumps(REPORT_DATA)) <= 2400, len(json.dumps(REPORT_DATA))


class Scenarios(Protocol):
    """What each implementation (repo, raw asyncpg, plain ORM) provides; results are summaries
    (ids, counts) that are equal across implementations, so the smoke test can compare them."""

    name: str

    async def login(self, email: str) -> Any: ...
    async def dashboard(self, user_id: uuid.UUID) -> Any: ...
    async def new_report(self, user_id: uuid.UUID) -> Any: ...
    async def report_page(self, report_id: uuid.UUID, user_id: uuid.UUID) -> Any: ...
    async def chat_turn(self, session_id: uuid.UUID, user_id: uuid.UUID) -> Any: ...
    async def save_action_plan(
        self, report_id: uuid.UUID, user_id: uuid.UUID, tasks: list[dict[str, Any]]
    ) -> Any: ...
    async def add_messages(
        self, session_id: uuid.UUID, user_id: uuid.UUID, messages: list[dict[str, Any]]
    ) -> Any: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class Fixtures:
    user_id: uuid.UUID
    report_id: uuid.UUID  # 10 certifications, 5 documents, 21 plan tasks
    chat_session_id: uuid.UUID  # 1,000 messages
    bulk_report_id: uuid.UUID  # save_action_plan lands here
    bulk_session_id: uuid.UUID  # add_messages lands here
    users: list[tuple[uuid.UUID, str]]  # (id, email) of existing users: login, dashboard
    chats: list[tuple[uuid.UUID, uuid.UUID]]  # (session id, owner) of existing chat sessions


def plan_tasks(tag: str) -> list[dict[str, Any]]:
    """A 7-day plan, 3 tasks a day; `tag` makes the task ids new (inserts, not updates)."""
    return [
        {
            "task_id": f"{tag}-d{day}-t{t}",
            "day_number": day,
            "task_title": f"Day {day} task {t}",
            "task_description": "Register on the DGFT portal and file the IEC application",
            "task_category": "compliance",
        }
        for day in range(1, 8)
        for t in range(3)
    ]


def chat_messages(count: int) -> list[dict[str, Any]]:
    question = "Which certifications does my turmeric powder need for the United States?"
    answer = "FDA food facility registration, prior notice for each shipment, and FSSAI."
    return [
        {"role": "user", "content": question}
        if i % 2 == 0
        else {"role": "assistant", "content": answer, "sources": [{"title": "FDA", "page": i}]}
        for i in range(count)
    ]


async def make_fixtures(
    db: DatabaseConnection, *, pool: int = 200, seeded: bool = True
) -> Fixtures:
    """The benchmark user's report, chat session and bulk targets; `seeded`: also pick `pool`
    existing users and chat sessions (else the benchmark user's own stand in)."""
    async with db.session_scope() as s:
        users, reports, chat = UserRepository(s), ReportRepository(s), ChatRepository(s)
        user = await users.create(
            email=f"bench-{uuid.uuid4().hex[:12]}@example.in",
            password_hash=PASSWORD_HASH,
            business_type="Manufacturing",
            company_size="Small",
            company_name="Bench Exports",
        )
        report = await reports.create(
            user_id=user.id,
            product_name="Organic turmeric powder",
            destination_country="United States",
            hs_code="0910.30",
            report_data=REPORT_DATA,
        )
        for i, cert in enumerate(CERTIFICATIONS):
            await reports.add_certification(
                report.id,
                user_id=user.id,
                certification_id=cert,
                certification_name=cert,
                certification_type="regulatory",
                status="completed" if i < 3 else "in_progress",
            )
        for doc in DOCUMENTS:
            await reports.add_document(
                report.id, user_id=user.id, document_type=doc, document_data={"type": doc}
            )
        await reports.save_action_plan(report.id, user_id=user.id, tasks=plan_tasks("fixture"))
        bulk = await reports.create(
            user_id=user.id,
            product_name="Basmati rice",
            destination_country="UAE",
            report_data={"summary": "bulk target"},
        )
        session = await chat.create_session(user_id=user.id, report_id=report.id)
        await chat.add_messages(session.id, user_id=user.id, messages=chat_messages(1000))
        bulk_session = await chat.create_session(user_id=user.id)
        fixture_ids = (user.id, user.email, report.id, session.id, bulk.id, bulk_session.id)
    uid, email, rid, sid, bulk_rid, bulk_sid = fixture_ids
    pool_users, pool_chats = [(uid, email)], [(sid, uid)]
    if seeded:
        pool_users = await _existing(db, "id, email FROM users WHERE id", uid, pool) or pool_users
        where = "id, user_id FROM chat_sessions WHERE user_id"
        pool_chats = await _existing(db, where, uid, pool) or pool_chats
    return Fixtures(uid, rid, sid, bulk_rid, bulk_sid, pool_users, pool_chats)


async def _existing(db: DatabaseConnection, what: str, me: uuid.UUID, n: int) -> list[Any]:
    """Up to n seeded rows (two columns) not the benchmark user's."""
    async with db.engine.connect() as conn:
        query = text(f"SELECT {what} <> :me ORDER BY id LIMIT :n")
        return [(r[0], r[1]) for r in await conn.execute(query, {"me": me, "n": n})]


Op = Callable[[int], Awaitable[Any]]


def scenario_ops(impl: Scenarios, fx: Fixtures) -> dict[str, Op]:
    """Scenarios 1-5, the two bulk ones, and the old login where the implementation has it, as
    `op(i)`: iteration i picks its pooled user."""
    users, messages = fx.users, chat_messages(1000)
    old_login = getattr(impl, OLD_LOGIN, None)
    extra: dict[str, Op] = {}
    if old_login is not None:
        extra[OLD_LOGIN] = lambda i: old_login(users[i % len(users)][1])
    return extra | {
        "login": lambda i: impl.login(users[i % len(users)][1]),
        "dashboard": lambda i: impl.dashboard(users[i % len(users)][0]),
        "new_report": lambda i: impl.new_report(users[i % len(users)][0]),
        "report_page": lambda i: impl.report_page(fx.report_id, fx.user_id),
        "chat_turn": lambda i: impl.chat_turn(fx.chat_session_id, fx.user_id),
        "save_action_plan": lambda i: impl.save_action_plan(
            fx.bulk_report_id, fx.user_id, plan_tasks(f"{impl.name}-{i}-{uuid.uuid4().hex[:6]}")
        ),
        "add_messages": lambda i: impl.add_messages(fx.bulk_session_id, fx.user_id, messages),
    }


def mixed_op(impl: Scenarios, fx: Fixtures) -> Op:
    """Scenarios 1-5 in turn; chat turns spread over existing sessions (no single hot row)."""
    ops = scenario_ops(impl, fx)
    chats = fx.chats

    def op(i: int) -> Awaitable[Any]:
        kind = REQUEST_SCENARIOS[i % len(REQUEST_SCENARIOS)]
        if kind == "chat_turn":
            session_id, owner = chats[(i // len(REQUEST_SCENARIOS)) % len(chats)]
            return impl.chat_turn(session_id, owner)
        return ops[kind](i // len(REQUEST_SCENARIOS))

    return op
