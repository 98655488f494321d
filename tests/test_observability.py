"""What operators see: OpenTelemetry spans (one request of the example app, in an in-memory
exporter), pool metrics (the function and the Prometheus collector) and the slow-statement log,
all against the real database."""

from __future__ import annotations

import asyncio
import logging
import types
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import URL

import exportsathi_db.dependencies
from examples.app import app
from exportsathi_db import (
    AnalysisRepository,
    DatabaseConnection,
    PoolTimeoutError,
    QueryTimeoutError,
    ReportRepository,
    Settings,
    UserRepository,
)
from exportsathi_db.observability import pool_status
from exportsathi_db.observability.prometheus import register_pool_metrics
from exportsathi_db.observability.tracing import (
    CODE_FUNCTION_NAME,
    REPOSITORY_METHOD,
    instrument,
    uninstrument,
)
from exportsathi_db.repositories import executor
from tests.factories import make_report, make_user
from tests.helpers import client

SECRET = "s3cret-parameter-value"


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    yield provider
    provider.shutdown()


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """Tracing on, to an in-memory exporter, for one test; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        uninstrument()


async def _user_and_report(db: DatabaseConnection) -> tuple[uuid.UUID, uuid.UUID]:
    """A committed user and report with one certification."""
    async with db.session_scope() as session:
        user = await make_user(session)
        report = await make_report(session, user)
        await ReportRepository(session).add_certification(
            report.id,
            user_id=user.id,
            certification_id="fssai",
            certification_name="FSSAI",
            certification_type="regulatory",
        )
    return user.id, report.id


def asyncpg_traced() -> bool:
    """Whether asyncpg's Connection methods are wrapped (by an OpenTelemetry instrumentor):
    the wrapper passes isinstance checks for a function, but is not one."""
    return type(vars(asyncpg.Connection)["fetch"]) is not types.FunctionType


def _statements(finished: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [span for span in finished if span.kind is SpanKind.CLIENT]


async def test_one_request_of_the_example_app_is_traced_statement_by_statement(
    db: DatabaseConnection,
    monkeypatch: pytest.MonkeyPatch,
    provider: TracerProvider,
    spans: InMemorySpanExporter,
) -> None:
    user_id, report_id = await _user_and_report(db)
    spans.clear()
    monkeypatch.setattr(exportsathi_db.dependencies, "db_connection", db)
    # The request's own span, as a FastAPI instrumentation would open it.
    request_span = provider.get_tracer("test").start_as_current_span("GET report page")
    async with client(app) as http:
        with request_span:
            response = await http.get(f"/users/{user_id}/reports/{report_id}")
    assert response.status_code == 200, response.text
    assert response.json()["certifications"] == ["fssai"]

    finished = spans.get_finished_spans()
    assert finished[-1].name == "GET report page"
    methods = [span for span in finished[:-1] if span.kind is SpanKind.INTERNAL]
    assert [span.name for span in methods] == ["ReportRepository.get_full"]
    method = methods[0]
    assert method.attributes is not None
    assert method.attributes[CODE_FUNCTION_NAME] == (
        "exportsathi_db.repositories.reports.ReportRepository.get_full"
    )
    statements = _statements(finished)
    # The read scope: BEGIN (sent by SQLAlchemy with the first statement), the report page's
    # queries, ROLLBACK (sent by the unit of work after the method returned).
    names = [span.name.rstrip(";") for span in statements]
    assert names[0] == "BEGIN" and names[-1] == "ROLLBACK", names
    queries = statements[1:-1]
    assert queries and all(span.name == "SELECT" for span in queries), names
    for span in statements:
        attributes = dict(span.attributes or {})
        assert attributes["db.system"] == "postgresql"
        assert span.context.trace_id == method.context.trace_id
        assert not any(SECRET in str(v) or str(user_id) in str(v) for v in attributes.values())
    for span in statements[:-1]:  # sent inside the method's call
        assert span.parent is not None and span.parent.span_id == method.context.span_id
        assert dict(span.attributes or {})[REPOSITORY_METHOD] == "ReportRepository.get_full"
    assert REPOSITORY_METHOD not in dict(statements[-1].attributes or {})
    # The SQL text with its placeholders, the values nowhere (checked above).
    sql = str(dict(queries[0].attributes or {})["db.statement"])
    assert "FROM reports r WHERE r.id = $1 AND r.user_id = $2" in sql


async def test_statements_sent_straight_to_the_driver_are_traced_too(
    db: DatabaseConnection, spans: InMemorySpanExporter
) -> None:
    """The first statement of a transaction goes through SQLAlchemy (a prepared statement),
    the next ones straight to asyncpg: both are seen, each once, named by their method."""
    user_id, report_id = await _user_and_report(db)
    spans.clear()
    async with db.session_scope() as session:
        await UserRepository(session).get(user_id)
        await ReportRepository(session).get(report_id, user_id=user_id)
        await AnalysisRepository(session).get_metrics(user_id)
    statements = _statements(spans.get_finished_spans())
    seen = [
        (span.name.rstrip(";"), dict(span.attributes or {}).get(REPOSITORY_METHOD))
        for span in statements
    ]
    assert seen == [
        ("BEGIN", "UserRepository.get"),
        ("SELECT", "UserRepository.get"),
        ("SELECT", "ReportRepository.get"),  # ReportRepository.get calls get_or_none: one span
        ("SELECT", "AnalysisRepository.get_metrics"),
        ("COMMIT", None),
    ]


async def test_off_by_default_and_off_again_after_uninstrument(
    db: DatabaseConnection, provider: TracerProvider
) -> None:
    original = vars(UserRepository)["get"]
    assert not asyncpg_traced()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(tracer_provider=provider)
    try:
        assert vars(UserRepository)["get"] is not original
        assert asyncpg_traced()
    finally:
        uninstrument()
    assert vars(UserRepository)["get"] is original
    assert not asyncpg_traced()
    async with db.session_scope() as session:
        await session.execute(text("SELECT 1"))
        await UserRepository(session).get_or_none(uuid.uuid4())
    assert exporter.get_finished_spans() == ()


@pytest_asyncio.fixture(loop_scope="session")
async def small_pool(database_url: URL) -> AsyncIterator[DatabaseConnection]:
    settings = Settings(db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.3)
    db = DatabaseConnection(database_url, settings=settings)
    yield db
    await db.dispose()


async def test_pool_status_counts_checkouts_waits_and_timeouts(
    small_pool: DatabaseConnection,
) -> None:
    db = small_pool
    assert db.pool_status() == {}  # nothing built yet, and nothing built by asking
    async with db.session_scope() as session:
        await session.execute(text("SELECT 1"))
        status = db.pool_status()["primary"]
        assert (status.size, status.checked_out, status.idle, status.waits) == (1, 1, 0, 0)
        with pytest.raises(PoolTimeoutError):  # waits DB_POOL_TIMEOUT (0.3 s), then gives up
            async with db.session_scope() as other:
                await other.execute(text("SELECT 1"))

        async def second_unit() -> None:
            async with db.session_scope() as other:
                await other.execute(text("SELECT 1"))

        waiting = asyncio.create_task(second_unit())
        await asyncio.sleep(0.1)  # the second unit waits for this unit's connection
    await waiting
    status = pool_status(db.engine)
    assert status == db.pool_status()["primary"]
    assert (status.checked_out, status.idle, status.overflow, status.max_overflow) == (0, 1, 0, 0)
    assert (status.waits, status.timeouts) == (2, 1)
    assert status.wait_seconds >= 0.3  # at least the timed-out wait


async def test_prometheus_collector_reports_each_pool(small_pool: DatabaseConnection) -> None:
    registry = CollectorRegistry()
    register_pool_metrics(small_pool, registry)
    assert registry.get_sample_value("exportsathi_db_pool_size", {"pool": "primary"}) is None
    async with small_pool.session_scope() as session:
        await session.execute(text("SELECT 1"))
        labels = {"pool": "primary"}
        assert registry.get_sample_value("exportsathi_db_pool_checked_out", labels) == 1
    assert registry.get_sample_value("exportsathi_db_pool_size", labels) == 1
    # A scrape runs in prometheus_client's own thread.
    scraped = await asyncio.to_thread(registry.get_sample_value, "exportsathi_db_pool_idle", labels)
    assert scraped == 1
    assert registry.get_sample_value("exportsathi_db_pool_checked_out", labels) == 0
    assert registry.get_sample_value("exportsathi_db_pool_idle", labels) == 1
    assert registry.get_sample_value("exportsathi_db_pool_waits_total", labels) == 0
    assert registry.get_sample_value("exportsathi_db_pool_wait_seconds_total", labels) == 0
    assert registry.get_sample_value("exportsathi_db_pool_timeouts_total", labels) == 0


async def _slow_unit(db: DatabaseConnection) -> None:
    """A slow statement through SQLAlchemy, one straight to the driver (the second statement
    of the transaction), a fast one, then one the server stops after 150 ms."""
    async with db.session_scope() as session:
        await session.execute(text("SELECT pg_sleep(0.2), :v"), {"v": SECRET})
        await executor.fetch(session, "SELECT pg_sleep(0.2), $1::text", SECRET)
        await executor.fetch(session, "SELECT 1 AS fast")
    with pytest.raises(QueryTimeoutError):
        async with db.session_scope() as session:
            await session.execute(text("SET LOCAL statement_timeout = 150"))
            await executor.fetch(session, "SELECT pg_sleep(1), $1::text", SECRET)
    await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon after the statement


async def test_slow_statement_log_names_sql_and_duration_never_values(
    database_url: URL, db: DatabaseConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="exportsathi_db.slow_statements")
    await _slow_unit(db)  # DB_SLOW_STATEMENT_MS unset: nothing logged
    assert caplog.records == []

    slow = DatabaseConnection(database_url, settings=Settings(db_slow_statement_ms=100))
    try:
        await _slow_unit(slow)
    finally:
        await slow.dispose()
    records = [r for r in caplog.records if r.name == "exportsathi_db.slow_statements"]
    logged = [(r.getMessage().split(": ", 2)[0], r.statement) for r in records]  # type: ignore[attr-defined]
    assert logged == [
        ("slow statement", "SELECT pg_sleep(0.2), $1"),  # SQLAlchemy's bound parameter
        ("slow statement", "SELECT pg_sleep(0.2), $1::text"),
        ("slow statement (failed)", "SELECT pg_sleep(1), $1::text"),
    ]
    for record in records:
        assert record.duration_ms >= 100  # type: ignore[attr-defined]
        assert SECRET not in caplog.text and SECRET not in str(vars(record))


def test_asyncpg_instrumented_by_someone_else_stays_instrumented(provider: TracerProvider) -> None:
    """E.g. by `opentelemetry-instrument`: uninstrument() leaves their instrumentation alone."""
    theirs = AsyncPGInstrumentor()
    theirs.instrument(tracer_provider=provider)
    try:
        instrument(tracer_provider=provider)
        uninstrument()
        assert asyncpg_traced()
        assert not hasattr(UserRepository.get, "__wrapped__")
    finally:
        theirs.uninstrument()
    assert not asyncpg_traced()
