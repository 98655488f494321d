"""The baseline: the same statements and transactions, hand-written on a raw asyncpg pool."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import uuid_utils.compat as uuid_utils
from sqlalchemy.engine import URL

from benchmarks import asyncpg_sql as sql
from benchmarks.fixtures import REPORT_DATA
from benchmarks.scenarios_repo import ANSWER, QUESTION

MESSAGE_COLUMNS = ["id", "session_id", "role", "content", "sources"]


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # binary jsonb: a version byte, then the text


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


async def _init(conn: asyncpg.Connection) -> None:
    """JSONB to and from Python values, in binary format so COPY can use it too."""
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )


def connect_kwargs(url: URL) -> dict[str, Any]:
    """asyncpg.connect() arguments for a SQLAlchemy URL (a socket directory in ?host=)."""
    host = url.host or url.query.get("host")
    return {
        "host": host if isinstance(host, str) or host is None else host[-1],
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }


async def create_pool(url: URL, *, min_size: int = 10, max_size: int = 30) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        **connect_kwargs(url), min_size=min_size, max_size=max_size, init=_init
    )
    return pool


def _arrays(messages: list[dict[str, Any]]) -> list[list[Any]]:
    ids = [uuid_utils.uuid7() for _ in messages]
    sources = [None if m.get("sources") is None else json.dumps(m["sources"]) for m in messages]
    return [ids, [m["role"] for m in messages], [m["content"] for m in messages], sources]


class AsyncpgScenarios:
    name = "asyncpg"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def login(self, email: str) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            user = await conn.fetchrow(sql.GET_BY_EMAIL, email)
            assert user is not None
            user = await conn.fetchrow(sql.RECORD_LOGIN, user["id"])
        assert user is not None
        return user["id"]

    async def dashboard(self, user_id: uuid.UUID) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            user = await conn.fetchrow(sql.GET_USER, user_id)
            metrics = await conn.fetchrow(sql.GET_METRICS, user_id)
            reports = await conn.fetch(sql.LIST_REPORTS, user_id, 21)
        assert user is not None and metrics is not None
        return user["id"], metrics["reports_generated"] or 0, len(reports[:20])

    async def new_report(self, user_id: uuid.UUID) -> Any:
        product, dest, new_id = "Organic turmeric powder", "United States", uuid_utils.uuid7()
        args = (new_id, user_id, product, dest, "0910.30", 35, REPORT_DATA, uuid_utils.uuid7())
        async with self.pool.acquire() as conn, conn.transaction():
            report = await conn.fetchrow(sql.CREATE_REPORT, *args)
        assert report is not None
        return report["user_id"], report["status"]

    async def report_page(self, report_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            report = await conn.fetchrow(sql.GET_FULL, report_id, user_id)
        assert report is not None
        return tuple(len(report[k]) for k in ("certifications", "documents", "action_plan"))

    async def chat_turn(self, session_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            for role, content, sources in (("user", QUESTION, None), ("assistant", ANSWER, "[]")):
                args = (uuid_utils.uuid7(), role, content, sources)
                added = await conn.fetchrow(sql.ADD_MESSAGE, session_id, user_id, *args)
                assert added is not None
            rows = await conn.fetch(sql.HISTORY, session_id, user_id, 50)
        history = [row for row in reversed(rows) if row["id"] is not None]
        return len(history), history[-1]["content"]

    async def save_action_plan(
        self, report_id: uuid.UUID, user_id: uuid.UUID, tasks: list[dict[str, Any]]
    ) -> Any:
        columns = ("task_id", "day_number", "task_title", "task_description", "task_category")
        arrays = [[t.get(c) for t in tasks] for c in (*columns, "completed")]
        ids = [uuid_utils.uuid7() for _ in tasks]
        async with self.pool.acquire() as conn, conn.transaction():
            saved = await conn.fetch(sql.SAVE_PLAN, ids, *arrays, report_id, user_id)
        return len(saved)

    async def add_messages(
        self, session_id: uuid.UUID, user_id: uuid.UUID, messages: list[dict[str, Any]]
    ) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(sql.ADD_MESSAGES, session_id, user_id, *_arrays(messages))
        return int(status.split()[-1])

    async def copy_messages(
        self, session_id: uuid.UUID, _user_id: uuid.UUID, messages: list[dict[str, Any]]
    ) -> Any:
        """The speed limit for bulk messages: COPY, nothing checked, the session not touched."""
        ids, roles, contents, _ = _arrays(messages)
        sources = [m.get("sources") for m in messages]  # the jsonb codec encodes them
        records = zip(ids, [session_id] * len(ids), roles, contents, sources, strict=True)
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.copy_records_to_table(
                "chat_messages", records=records, columns=MESSAGE_COLUMNS
            )
        return int(status.split()[-1])

    async def close(self) -> None:
        await self.pool.close()
