"""The server password never shows in logs (even DEBUG with echo), error messages or reprs."""

from __future__ import annotations

import logging
import secrets
import traceback
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from exportsathi_db.database import DatabaseConnection
from exportsathi_db.errors import (
    AlreadyExistsError,
    ConfigurationError,
    DatabaseUnavailableError,
)
from exportsathi_db.repositories.users import UserRepository
from tests.factories import PASSWORD_HASH, unique
from tests.reliability.support import settings
from tests.servers import admin_connection, free_port, missing

ECHOED = "SELECT count(*) AS echoed FROM users WHERE email = "
PROFILE: dict[str, Any] = {
    "password_hash": PASSWORD_HASH,
    "business_type": "SaaS",
    "company_size": "Small",
}


def _texts_of(error: BaseException) -> list[str]:
    """Everything an error can print: str, repr and the whole chained traceback."""
    texts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return texts


async def _workload(url: URL, texts: list[str]) -> None:
    """Create/get/update users, a duplicate email: with echo on; reprs and errors to `texts`."""
    config = settings(database_url=url.render_as_string(hide_password=False), db_echo=True)
    db = DatabaseConnection(settings=config)
    email = f"{unique('secret')}@example.in"
    try:
        async with db.session_scope() as session:
            users = UserRepository(session)
            user = await users.create(email=email, **PROFILE)
            await users.update(user.id, company_name="Surat Diamonds")
            texts += [repr(await users.get(user.id))]
            found = await session.execute(
                text(ECHOED + ":e"), {"e": email}
            )  # a statement echo logs
            assert found.scalar_one() == 1
        with pytest.raises(AlreadyExistsError) as duplicate:
            async with db.session_scope() as session:
                await UserRepository(session).create(email=email.upper(), **PROFILE)
        texts += _texts_of(duplicate.value)
        texts += [repr(db), str(db), repr(db.engine), repr(db.url), str(db.url)]
        texts += [repr(config), str(config), repr(config.model_dump()), config.model_dump_json()]
        async with db.session_scope() as session:
            await UserRepository(session).delete(user.id)
    finally:
        await db.dispose()


async def _failed_connection(url: URL, texts: list[str]) -> BaseException:
    db = DatabaseConnection(url, settings=settings(db_echo=True))
    try:
        async with db.session_scope() as session:
            await UserRepository(session).get_or_none(uuid.uuid4())
    except Exception as exc:
        texts += [*_texts_of(exc), repr(db), repr(db.engine), repr(db.url)]
        return exc
    finally:
        await db.dispose()
    raise AssertionError(f"connecting to {url!r} did not fail")


def needs_password_login(url: URL) -> str:
    """The test server's password; these tests skip (fail in CI) without one: a server
    reached over TCP whose role logs in with a password of 8 or more characters."""
    tcp = url.host is not None and not url.host.startswith("/")
    if not tcp or not isinstance(url.password, str) or len(url.password) < 8:
        missing(
            "a test server that checks passwords: TEST_DATABASE_URL over TCP (e.g. 127.0.0.1) "
            "with a password of 8 or more characters, for a role with password authentication"
        )
    return url.password


async def test_no_password_in_logs_errors_or_reprs(
    database_url: URL, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    password = needs_password_login(database_url)
    wrong = f"wrong-{secrets.token_urlsafe(12)}"
    dead = database_url.set(host="127.0.0.1", port=free_port())  # nothing listens there
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)  # the root logger: every library's debug output

    await _workload(database_url, texts)
    login = await _failed_connection(database_url.set(password=wrong), texts)
    unreachable = await _failed_connection(dead, texts)

    assert isinstance(login, ConfigurationError) and "refused the login" in str(login)
    assert "password authentication failed" in str(login.__cause__)
    assert isinstance(unreachable, DatabaseUnavailableError) and unreachable.retryable
    out, err = capfd.readouterr()
    assert ECHOED in out and ECHOED in caplog.text  # echo really logged the SQL
    everything = [caplog.text, out, err, *(r.getMessage() for r in caplog.records), *texts]
    for secret in (password, wrong):
        leaks = [t.replace(secret, "<THE PASSWORD>") for t in everything if secret in t]
        assert not leaks, leaks[0][:500]


async def test_a_password_with_an_unescaped_at_is_refused_and_never_shown(
    database_url: URL, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """`user:S3cr3t@PW@host` would make `PW@host` the host, and every message naming the server
    would show it: refused at parse time. Percent-encoded, the same password logs in."""
    needs_password_login(database_url)
    role = f"at_sign_{secrets.token_hex(4)}"
    head, tail = f"Head{secrets.token_hex(4)}", f"Tail{secrets.token_hex(4)}"
    password = f"{head}@{tail}:/?"
    admin = await admin_connection(database_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        caplog.set_level(logging.DEBUG)
        texts: list[str] = []
        port = database_url.port
        unescaped = f"postgresql://{role}:{password}@127.0.0.1:{port}/{database_url.database}"
        with pytest.raises(ConfigurationError, match="percent-encoded") as refused:
            _ = DatabaseConnection(unescaped, settings=settings(db_echo=True)).engine
        with pytest.raises(ConfigurationError, match="percent-encoded") as refused_setting:
            settings(database_url=unescaped)
        texts += _texts_of(refused.value) + _texts_of(refused_setting.value)

        escaped = unescaped.replace(password, quote(password, safe=""))
        db = DatabaseConnection(escaped, settings=settings(db_echo=True))
        try:
            async with db.session_scope() as session:
                who = await session.execute(text("SELECT current_user"))
                assert who.scalar_one() == role
            texts += [repr(db), str(db.url), repr(db.engine)]
        finally:
            await db.dispose()
        out, err = capfd.readouterr()
        everything = [caplog.text, out, err, *texts]
        for piece in (head, tail):
            leaks = [t for t in everything if piece in t]
            assert not leaks, leaks[0][:500]
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()
