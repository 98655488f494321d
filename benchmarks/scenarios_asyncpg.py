"""The baseline: the same statements and transactions as the repositories, hand-written on a
raw asyncpg pool, as a careful developer would write them.

Like for like with the repositories' unit of work:
- the same SQL text (benchmarks/asyncpg_sql.py imports it), the same round trips;
- `BEGIN … COMMIT` (`conn.transaction()`) around every unit, as `session_scope()` sends;
  the `read_only` variant sends `BEGIN READ ONLY … ROLLBACK`, as `read_scope()` does;
- no reset query on release: asyncpg's pool by default sends `pg_advisory_unlock_all(); CLOSE
  ALL; UNLISTEN *; RESET ALL` (one more round trip) when a connection goes back, which
  SQLAlchemy's pool does not (its reset is a ROLLBACK, sent only if a transaction is open).
  `create_pool(reset=None)` means "the default reset", so a do-nothing `reset` coroutine it is.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import uuid_utils.compat as uuid_utils
from sqlalchemy.engine import URL

from benchmarks import asyncpg_sql as sql
from benchmarks.fixtures import REPORT_DATA
from benchmarks.scenarios_repo import ANSWER, QUESTION

MESSAGE_COLUMNS = ["id", "session_id", "role", "content", "sources"]
CHAT_TTL = timedelta(hours=24)


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # binary jsonb: a version byte, then the text


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    """JSONB to and from Python values, in binary format so COPY can use it too (the codec
    SQLAlchemy installs on the repositories' connections does the same work)."""
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )


async def no_reset(_conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (an open transaction is still rolled back)."""


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


async def create_pool(
    url: URL, *, min_size: int = 10, max_size: int = 20, on_connect: Callable[[], Any] = int
) -> asyncpg.Pool:
    """The baseline's pool; `on_connect()` is called for every new connection it opens."""

    async def init(conn: asyncpg.Connection) -> None:
        on_connect()
        await init_connection(conn)

    pool: asyncpg.Pool = await asyncpg.create_pool(
        **connect_kwargs(url), min_size=min_size, max_size=max_size, init=init, reset=no_reset
    )
    return pool


def _arrays(messages: list[dict[str, Any]]) -> list[list[Any]]:
    ids = [uuid_utils.uuid7() for _ in messages]
    sources = [None if m.get("sources") is None else json.dumps(m["sources"]) for m in messages]
    return [ids, [m["role"] for m in messages], [m["content"] for m in messages], sources]


class AsyncpgScenarios:
    """`read_only=True`: the reading scenarios in `BEGIN READ ONLY … ROLLBACK` (what
    `read_scope()` sends) instead of `BEGIN … COMMIT`."""

    def __init__(self, pool: asyncpg.Pool, *, read_only: bool = False, owns_pool: bool = True):
        self.pool = pool
        self.read_only = read_only
        self.owns_pool = owns_pool
        self.name = "asyncpg (read only)" if read_only else "asyncpg"

    async def login(self, email: str) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            user = await conn.fetchrow(sql.LOGIN, email)
        assert user is not None
        return user["id"]

    async def login_two_statements(self, email: str) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            user = await conn.fetchrow(sql.GET_BY_EMAIL, email)
            assert user is not None
            user = await conn.fetchrow(sql.RECORD_LOGIN, user["id"])
        assert user is not None
        return user["id"]

    async def dashboard(self, user_id: uuid.UUID) -> Any:
        async with self.pool.acquire() as conn:
            if self.read_only:
                tx = conn.transaction(readonly=True)
                await tx.start()
                try:
                    user = await conn.fetchrow(sql.GET_USER, user_id)
                    metrics = await conn.fetchrow(sql.GET_METRICS, user_id)
                    reports = await conn.fetch(sql.LIST_REPORTS, user_id, 21)
                finally:
                    await tx.rollback()
            else:
                async with conn.transaction():
                    user = await conn.fetchrow(sql.GET_USER, user_id)
                    metrics = await conn.fetchrow(sql.GET_METRICS, user_id)
                    reports = await conn.fetch(sql.LIST_REPORTS, user_id, 21)
        assert user is not None and metrics is not None
        return user["id"], metrics[sql.METRICS_REPORTS_GENERATED], len(reports[:20])

    async def new_report(self, user_id: uuid.UUID) -> Any:
        given = {
            "product_name": "Organic turmeric powder",
            "destination_country": "United States",
            "hs_code": "0910.30",
            "risk_score": 35,
            "report_data": REPORT_DATA,
            "status": "completed",
        }
        args = [given.get(name) for name in sql.REPORT_SETTABLE]
        new_id, metrics_id = uuid_utils.uuid7(), uuid_utils.uuid7()
        async with self.pool.acquire() as conn, conn.transaction():
            report = await conn.fetchrow(sql.CREATE_REPORT, new_id, user_id, metrics_id, *args)
        assert report is not None
        return report["user_id"], report["status"]

    async def report_page(self, report_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        async with self.pool.acquire() as conn:
            if self.read_only:
                tx = conn.transaction(readonly=True)
                await tx.start()
                try:
                    report = await conn.fetchrow(sql.GET_FULL, report_id, user_id)
                finally:
                    await tx.rollback()
            else:
                async with conn.transaction():
                    report = await conn.fetchrow(sql.GET_FULL, report_id, user_id)
        assert report is not None
        return len(report[-3]), len(report[-2]), len(report[-1])

    async def chat_turn(self, session_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            for role, content, sources in (("user", QUESTION, None), ("assistant", ANSWER, "[]")):
                args = (uuid_utils.uuid7(), role, content, sources)
                added = await conn.fetchrow(sql.ADD_MESSAGE, session_id, user_id, *args)
                assert added is not None
            rows = await conn.fetch(sql.HISTORY, session_id, user_id, 50)
        history = [row for row in reversed(rows) if row[1] is not None]
        return len(history), history[-1]["content"]

    async def save_action_plan(
        self, report_id: uuid.UUID, user_id: uuid.UUID, tasks: list[dict[str, Any]]
    ) -> Any:
        arrays = [[t.get(c) for t in tasks] for c in sql.PLAN_FIELDS]
        ids = [uuid_utils.uuid7() for _ in tasks]
        async with self.pool.acquire() as conn, conn.transaction():
            saved = await conn.fetch(sql.SAVE_PLAN, report_id, user_id, ids, *arrays)
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
        if self.owns_pool:
            await self.pool.close()
