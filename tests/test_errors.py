"""`errors.translate`: every driver error becomes one of this package's errors, classified by
type and SQLSTATE, with a message that names no parameter value, user or password.

Exceptions come from a real server wherever a test can provoke them; the rest (a protocol
state asyncpg reaches only when the server dies mid-message) are real asyncpg and SQLAlchemy
exception classes, wrapped the way SQLAlchemy's asyncpg adapter wraps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from asyncpg import exceptions as asyncpg_exc
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.engine import URL, make_url

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    ExportSathiDBError,
    InvalidDataError,
    UnexpectedDatabaseError,
    location,
    translate,
)
from tests.helpers import free_port

SECRET = "Secret-param-value-4711"  # a statement parameter that must never be shown
Adapter = AsyncAdapt_asyncpg_dbapi


def _raised_from(outer: Exception, inner: BaseException) -> Exception:
    """`outer`, raised `from inner` (so both have a traceback and a cause), caught."""
    try:
        raise outer from inner
    except Exception as exc:
        return exc


def adapted(driver: Exception, kind: type[Exception] = Adapter.Error) -> Exception:
    """`driver` wrapped as SQLAlchemy's asyncpg adapter wraps it (`raise ... from driver`)."""
    return _raised_from(kind(str(driver), driver), driver)


def through_sqlalchemy(
    driver: Exception, *, invalidated: bool = False, kind: type[Exception] = Adapter.Error
) -> sa_exc.DBAPIError:
    """`driver` as a SQLAlchemy Connection reports it: a DBAPIError around the adapter's."""
    inner = adapted(driver, kind)
    error = sa_exc.DBAPIError.instance(
        "SELECT $1::int", (SECRET,), inner, Adapter.Error, connection_invalidated=invalidated
    )
    assert isinstance(error, sa_exc.DBAPIError)
    return error


def shown(error: BaseException) -> str:
    """What a translated error prints (str and repr)."""
    return f"{error} {error!r}"


async def caught(work: Awaitable[Any]) -> Exception:
    try:
        await work
    except Exception as exc:
        return exc
    raise AssertionError("no error was raised")


# -- every asyncpg exception class: never a raw driver error ------------------------------------


def _asyncpg_classes() -> list[type[Exception]]:
    bases = (asyncpg_exc.PostgresError, asyncpg_exc.InterfaceError, asyncpg_exc.InternalClientError)
    found = {
        cls for _, cls in inspect.getmembers(asyncpg_exc, inspect.isclass) if issubclass(cls, bases)
    }
    return sorted(found, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", _asyncpg_classes(), ids=lambda cls: cls.__name__)
def test_every_asyncpg_error_becomes_ours(cls: type[Exception]) -> None:
    driver = cls(f"something about {SECRET}")
    # asyncpg's own words on its settings (e.g. a missing root certificate) are shown.
    echoes = issubclass(cls, asyncpg_exc.ClientConfigurationError)
    for error in (
        _raised_from(driver, ValueError()),
        adapted(cls(f"something about {SECRET}")),
        through_sqlalchemy(cls(f"something about {SECRET}")),
        through_sqlalchemy(cls(f"something about {SECRET}"), invalidated=True),
    ):
        translated = translate(error)
        assert isinstance(translated, ExportSathiDBError), (cls, type(error))
        assert echoes or SECRET not in shown(translated), (cls, translated)


def test_application_errors_stay_what_they_are() -> None:
    """Only driver errors are translated: an application's own (even an OSError, or one whose
    cause is a driver error) and a cancellation pass through."""
    for error in (
        ValueError("bad input"),
        FileNotFoundError(2, "No such file or directory"),
        TimeoutError(),  # e.g. the application's own asyncio.timeout() inside a unit of work
        asyncio.CancelledError(),
        _raised_from(LookupError("handler failed"), asyncpg_exc.UniqueViolationError("dup")),
    ):
        try:
            raise error
        except BaseException as exc:
            assert translate(exc) is exc


# -- 1. a database that does not exist ----------------------------------------------------------


async def test_a_missing_database_is_a_configuration_error_naming_it(database_url: URL) -> None:
    missing = database_url.set(database=f"no_such_db_{uuid.uuid4().hex[:8]}")
    db = DatabaseConnection(missing)
    try:
        error = await caught(_select_one(db))
    finally:
        await db.dispose()
    for translated in (translate(error), translate(error, url=missing)):
        assert isinstance(translated, ConfigurationError) and not translated.retryable
        message = str(translated)
        assert f'the database "{missing.database}" does not exist' in message
        assert "CREATE DATABASE" in message and "DATABASE_URL" in message
        assert "init` creates the tables, not the database" in message
    assert f"does not exist at {location(missing)}:" in str(translate(error, url=missing))


async def _select_one(db: DatabaseConnection) -> None:
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


# -- 2. TLS demanded from a server without it ---------------------------------------------------


def test_a_connection_error_raised_elsewhere_is_not_a_tls_refusal() -> None:
    """The TLS refusal is recognised by where asyncpg raises it, not by its words alone."""
    try:
        raise ConnectionError('PostgreSQL server at "h:5432" rejected SSL upgrade')
    except ConnectionError as exc:
        assert not isinstance(translate(exc), ConfigurationError)


# -- 5. no free connection slots, and other resource shortages ----------------------------------


def test_too_many_connections_has_its_own_message() -> None:
    driver = asyncpg_exc.TooManyConnectionsError("sorry, too many clients already")
    for error in (driver, through_sqlalchemy(driver)):
        translated = translate(error)
        assert isinstance(translated, DatabaseUnavailableError) and translated.retryable
        assert "no free connection slots" in str(translated)
        assert "max_connections" in str(translated) and "DB_POOL_SIZE" in str(translated)
        assert "PgBouncer" in str(translated)
        assert "lost" not in str(translated)


@pytest.mark.parametrize(
    ("cls", "words"),
    [
        (asyncpg_exc.DiskFullError, "disk full"),
        (asyncpg_exc.OutOfMemoryError, "out of memory"),
        (asyncpg_exc.InsufficientResourcesError, "insufficient resources"),
        (asyncpg_exc.ConfigurationLimitExceededError, "configuration limit"),
    ],
)
def test_other_resource_shortages_are_retryable(cls: type[Exception], words: str) -> None:
    translated = translate(through_sqlalchemy(cls("could not extend file")))
    assert isinstance(translated, DatabaseUnavailableError) and translated.retryable
    assert words in str(translated) and "lost" not in str(translated)


# -- 6. a connection that breaks, in every shape it arrives in ----------------------------------


@pytest.mark.parametrize(
    "error",
    [
        asyncpg_exc.InternalClientError("cannot switch to state 12"),
        asyncpg_exc.ProtocolError("unexpected message"),
        asyncpg_exc.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg_exc.InterfaceError("connection is closed"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_broken_connection_is_retryable_in_every_wrapping(error: Exception) -> None:
    kind = (
        Adapter.InternalClientError
        if isinstance(error, asyncpg_exc.InternalClientError)
        else Adapter.InterfaceError
    )
    wrappings = [_raised_from(error, ValueError()), adapted(error, kind)]
    if type(error) is not asyncpg_exc.InterfaceError:  # for that one, see the next test
        wrappings.append(through_sqlalchemy(error, kind=kind))
    wrappings.append(through_sqlalchemy(error, kind=kind, invalidated=True))
    for wrapped in wrappings:
        translated = translate(wrapped)
        assert isinstance(translated, DatabaseUnavailableError), type(wrapped)
        assert translated.retryable and "retry" in str(translated)


def test_an_interface_error_on_a_live_connection_is_not_retryable() -> None:
    """Through SQLAlchemy, which looked at the connection and found it open, a plain
    InterfaceError is a misuse (e.g. two statements at once on one connection)."""
    driver = asyncpg_exc.InterfaceError(
        "cannot perform operation: another operation is in progress"
    )
    translated = translate(through_sqlalchemy(driver, kind=Adapter.InterfaceError))
    assert isinstance(translated, UnexpectedDatabaseError) and not translated.retryable


@contextlib.asynccontextmanager
async def cuttable_proxy(host: str, port: int) -> AsyncIterator[tuple[int, Callable[[], None]]]:
    """A TCP proxy to host:port; yields (its port, a function that cuts every connection)."""
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        writers.extend([writer, upstream_writer])
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def cut() -> None:
        for writer in writers:
            writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], cut
    finally:
        cut()
        server.close()
        await server.wait_closed()


async def test_a_connection_cut_mid_statement_is_retryable(database_url: URL) -> None:
    if database_url.host is None:
        pytest.skip("the test server is reached over a unix socket")
    async with cuttable_proxy(database_url.host, database_url.port or 5432) as (port, cut):
        via_proxy = database_url.set(host="127.0.0.1", port=port)
        db = DatabaseConnection(via_proxy)
        raw = await asyncpg.connect(
            host="127.0.0.1",
            port=port,
            user=database_url.username,
            password=database_url.password,
            database=database_url.database,
        )
        try:
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                statements = asyncio.gather(
                    caught(conn.execute(text("SELECT pg_sleep(3)"))),
                    caught(raw.fetchval("SELECT pg_sleep(3)")),
                )
                await asyncio.sleep(0.5)
                cut()
                through_engine, raw_error = await statements
                after_cut = await caught(raw.fetchval("SELECT 1"))  # the closed connection
        finally:
            raw.terminate()
            await db.dispose()
    assert isinstance(raw_error, asyncpg_exc.ConnectionDoesNotExistError)
    assert isinstance(after_cut, asyncpg_exc.InterfaceError)
    for error in (through_engine, raw_error, after_cut):
        translated = translate(error)
        assert isinstance(translated, DatabaseUnavailableError), error
        assert translated.retryable


# -- the fallback: named by SQLSTATE, never by the server's words -------------------------------


async def test_any_other_server_error_names_its_sqlstate_only(db: DatabaseConnection) -> None:
    async with db.engine.connect() as conn:
        sql = text("SELECT CAST(:v AS no_such_type_here)")
        error = await caught(conn.execute(sql, {"v": SECRET}))
        await conn.rollback()
    translated = translate(error)
    assert isinstance(translated, UnexpectedDatabaseError) and not translated.retryable
    assert translated.sqlstate == "42704"
    assert "SQLSTATE 42704" in str(translated) and "UndefinedObjectError" in str(translated)
    assert SECRET not in shown(translated) and "no_such_type_here" not in str(translated)


# -- 7. a parameter asyncpg cannot encode: classified by the Python error it chains -------------

ENCODING_CASES = [
    ("int4", 2**31, "is out of range for its column", OverflowError),
    ("int2", 40_000, "is out of range for its column", OverflowError),
    ("int4", "12", "has the wrong type for its column", TypeError),
    ("timestamptz", "2024-01-01", "has the wrong type for its column", TypeError),
    ("uuid", "not-a-uuid", "is not valid for its column", ValueError),
    ("numeric", "abc", "is not valid for its column", ArithmeticError),
    ("text", "a\udc80", "is not valid for its column", UnicodeEncodeError),
]


@pytest.mark.parametrize(("pg_type", "value", "message", "cause"), ENCODING_CASES)
async def test_an_unencodable_parameter_says_why_and_where(
    db: DatabaseConnection, pg_type: str, value: object, message: str, cause: type[Exception]
) -> None:
    sql = f"SELECT CAST(:a AS text), CAST(:b AS {pg_type})"  # the bad value is $2
    async with db.engine.connect() as conn:
        through_engine = await caught(conn.execute(text(sql), {"a": "fine", "b": value}))
        await conn.rollback()
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        raw_sql = f"SELECT $1::text, $2::{pg_type}"
        raw = await caught(driver.fetchrow(raw_sql, "fine", value))
    assert isinstance(raw, asyncpg_exc.DataError) and isinstance(raw.__cause__, cause)
    for error in (through_engine, raw):
        translated = translate(error)
        assert isinstance(translated, InvalidDataError), error
        assert translated.field == "$2"
        assert str(translated) == f"$2: {message}"


# -- where a server is shown: never its userinfo -------------------------------------------------


def test_location_never_shows_userinfo() -> None:
    misread = URL.create("postgresql+asyncpg", "postgres", "S3cr3t", "PW@127.0.0.1", 55432, "db")
    assert location(misread) == "127.0.0.1:55432"
    socket = URL.create("postgresql+asyncpg", "u", None, None, None, "db", {"host": "/run/pg"})
    assert location(socket) == "/run/pg:5432"


@pytest.mark.parametrize(
    "query",
    ["host=h1:5432&host=h2:5433", "host=h1,h2&port=5432,5433"],
)
def test_location_of_several_hosts_pairs_each_with_its_port(query: str) -> None:
    url = make_url(f"postgresql://u:S3cr3t@/db?{query}")
    assert location(url) == "h1:5432,h2:5433"


async def test_a_dead_port_names_the_server() -> None:
    port = free_port()
    url = URL.create("postgresql+asyncpg", "u", "p", "127.0.0.1", port, "db")
    connect = asyncpg.connect(host="127.0.0.1", port=port, user="u", password="p", database="db")
    error = await caught(connect)
    translated = translate(error, url=url)
    assert isinstance(translated, DatabaseUnavailableError) and translated.retryable
    assert f"127.0.0.1:{port}" in str(translated)
