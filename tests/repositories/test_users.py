"""UserRepository against the real database: normal, empty, bad input, and isolation."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.errors import AlreadyExistsError, InvalidDataError, NotFoundError
from exportsathi_db.models import User
from exportsathi_db.repositories import UserRepository
from exportsathi_db.views import UserView
from tests.factories import PASSWORD_HASH, make_report, make_user, unique
from tests.statements import count_statements


async def _user_count(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(User))).scalar_one()


def _new_user(**overrides: object) -> dict[str, object]:
    return {
        "email": f"{unique('u')}@Example.IN",
        "password_hash": PASSWORD_HASH,
        "business_type": "Merchant",
        "company_size": "Micro",
    } | overrides


async def test_create_returns_a_loaded_user_in_one_statement(db_session: AsyncSession) -> None:
    repo = UserRepository(db_session)
    async with count_statements(db_session) as seen:
        user = await repo.create(**_new_user(company_name="Surat Textiles", monthly_volume=120))
    assert len(seen) == 1
    assert user.id.version == 7
    assert isinstance(user.created_at, datetime) and user.created_at.tzinfo is not None
    row = (
        await db_session.execute(
            text("SELECT company_name, monthly_volume FROM users WHERE id = :i"), {"i": user.id}
        )
    ).one()
    assert tuple(row) == ("Surat Textiles", 120)


async def test_email_is_unique_in_any_letter_case_and_the_transaction_survives(
    db_session: AsyncSession,
) -> None:
    repo = UserRepository(db_session)
    await repo.create(**_new_user(email="Priya@Spices.in"))
    with pytest.raises(AlreadyExistsError, match="email"):
        await repo.create(**_new_user(email="priya@SPICES.IN"))
    assert await _user_count(db_session) == 1
    # ON CONFLICT DO NOTHING: the caller's transaction is still usable.
    await repo.create(**_new_user())
    assert await _user_count(db_session) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("business_type", "Farmer"),
        ("company_size", "Huge"),
        ("password_hash", "hunter2"),
        ("password_hash", "correct horse battery staple"),
        ("email", "not-an-email"),
        ("email", "a" * 251 + "@x.in"),
        ("monthly_volume", -1),
        ("monthly_volume", 2**40),
        ("company_name", "nul\x00byte"),
        ("company_name", "bad \ud800 surrogate"),
    ],
)
async def test_bad_input_is_rejected_before_sql_and_nothing_is_written(
    db_session: AsyncSession, field: str, value: object
) -> None:
    repo = UserRepository(db_session)
    async with count_statements(db_session) as seen:
        with pytest.raises(InvalidDataError) as caught:
            await repo.create(**_new_user(**{field: value}))
    assert caught.value.field == field
    assert seen == []
    assert await _user_count(db_session) == 0


async def test_plain_password_never_appears_in_the_error(db_session: AsyncSession) -> None:
    with pytest.raises(InvalidDataError) as caught:
        await UserRepository(db_session).create(**_new_user(password_hash="S3cret-Passw0rd"))
    assert "S3cret-Passw0rd" not in str(caught.value)


async def test_get_get_or_none_and_get_by_email(db_session: AsyncSession) -> None:
    repo = UserRepository(db_session)
    user = await make_user(db_session, email="Anil@Kerala-Coir.in")
    assert (await repo.get(user.id)).email == "Anil@Kerala-Coir.in"
    assert await repo.get_or_none(uuid.uuid4()) is None
    with pytest.raises(NotFoundError):
        await repo.get(uuid.uuid4())
    found = await repo.get_by_email("anil@kerala-coir.IN")
    assert found is not None and found.id == user.id
    assert await repo.get_by_email("nobody@kerala-coir.in") is None


async def test_get_by_email_uses_the_lower_email_index(db_session: AsyncSession) -> None:
    plan = (
        await db_session.execute(
            text("EXPLAIN SELECT * FROM users WHERE lower(email) = lower('a@b.in')")
        )
    ).scalars()
    assert "uq_users_lower_email" in "\n".join(plan)


async def test_update_changes_only_the_given_fields(db_session: AsyncSession) -> None:
    repo = UserRepository(db_session)
    past = datetime(2024, 1, 1, tzinfo=UTC)
    user = await make_user(db_session, company_name="Old", updated_at=past)
    assert user.updated_at == past
    updated = await repo.update(user.id, company_name="New", business_type="SaaS")
    assert (updated.company_name, updated.business_type, updated.company_size) == (
        "New",
        "SaaS",
        "Small",
    )
    assert updated.updated_at > past  # moved by the trigger, returned by RETURNING
    assert (await repo.update(user.id)).company_name == "New"


async def test_update_rejects_unknown_and_bad_fields(db_session: AsyncSession) -> None:
    repo = UserRepository(db_session)
    user = await make_user(db_session, company_name="Same")
    with pytest.raises(InvalidDataError, match="id"):
        await repo.update(user.id, id=uuid.uuid4())
    with pytest.raises(InvalidDataError, match="company_size"):
        await repo.update(user.id, company_size="Giant")
    with pytest.raises(NotFoundError):
        await repo.update(uuid.uuid4(), company_name="x")
    name = (
        await db_session.execute(
            text("SELECT company_name FROM users WHERE id = :i"), {"i": user.id}
        )
    ).scalar_one()
    assert name == "Same"


async def test_update_to_a_taken_email_is_already_exists(db_session: AsyncSession) -> None:
    repo = UserRepository(db_session)
    await make_user(db_session, email="taken@x.in")
    other = await make_user(db_session)
    with pytest.raises(AlreadyExistsError):
        await repo.update(other.id, email="TAKEN@x.in")


async def test_record_login_stamps_the_transaction_time(db_session: AsyncSession) -> None:
    repo = UserRepository(db_session)
    user = await make_user(db_session)
    assert user.last_login is None
    logged = await repo.record_login(user.id)
    now = (await db_session.execute(text("SELECT now()"))).scalar_one()
    assert logged.last_login == now
    with pytest.raises(NotFoundError):
        await repo.record_login(uuid.uuid4())


async def test_delete_cascades_and_missing_is_not_found(db_session: AsyncSession) -> None:
    repo = UserRepository(db_session)
    user = await make_user(db_session)
    keep = await make_user(db_session)
    await make_report(db_session, user)
    await make_report(db_session, keep)
    await repo.delete(user.id)
    counts = (
        await db_session.execute(
            text("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM reports)")
        )
    ).one()
    assert tuple(counts) == (1, 1)
    with pytest.raises(NotFoundError):
        await repo.delete(user.id)


async def test_returned_user_is_usable_after_the_session_closes(db: object) -> None:
    from exportsathi_db.database import DatabaseConnection

    assert isinstance(db, DatabaseConnection)
    async with db.session_scope() as session:
        user = await UserRepository(session).create(**_new_user())
    assert user.email.endswith("@Example.IN") and user.updated_at is not None
    async with db.session_scope() as session:
        await UserRepository(session).delete(user.id)


async def test_get_is_one_statement_and_returns_a_frozen_read_model(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session, company_name="Kerala Coir")
    repo = UserRepository(db_session)
    async with count_statements(db_session) as seen:
        found = await repo.get(user.id)
    assert len(seen) == 1
    assert isinstance(found, UserView) and found.company_name == "Kerala Coir"
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.company_name = "changed"  # type: ignore[misc]
    assert "password_hash" not in repr(found) and PASSWORD_HASH not in repr(found)
    assert list(db_session.identity_map.values()) == [user]  # nothing of the repository's
    with pytest.raises(InvalidDataError, match="user_id"):
        await repo.get_or_none("not-a-uuid")  # type: ignore[arg-type]


async def test_get_reads_what_the_database_holds_now(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    repo = UserRepository(db_session)
    rename = text("UPDATE users SET company_name = 'Renamed' WHERE id = :i")
    await db_session.execute(rename, {"i": user.id})
    assert (await repo.get(user.id)).company_name == "Renamed"
    await db_session.execute(text("DELETE FROM users WHERE id = :i"), {"i": user.id})
    assert await repo.get_or_none(user.id) is None
    with pytest.raises(NotFoundError):
        await repo.get(user.id)


async def test_create_flushes_pending_changes_first(db_session: AsyncSession) -> None:
    pending = User(**_new_user())
    db_session.add(pending)
    await UserRepository(db_session).create(**_new_user())
    assert await _user_count(db_session) == 2


async def test_login_is_one_statement_and_a_failed_password_check_rolls_it_back(
    db: object,
) -> None:
    from exportsathi_db.database import DatabaseConnection

    assert isinstance(db, DatabaseConnection)
    async with db.session_scope() as session:
        user = await UserRepository(session).create(**_new_user())
    try:
        async with db.session_scope() as session:
            repo = UserRepository(session)
            assert await repo.login("nobody@example.in") is None
            logged = await repo.login(user.email.upper())
            assert logged is not None and logged.id == user.id
            assert logged.last_login is not None and logged.password_hash == PASSWORD_HASH

        class WrongPassword(Exception):
            pass

        with pytest.raises(WrongPassword):
            async with db.session_scope() as session:
                again = await UserRepository(session).login(user.email)
                assert again is not None and again.last_login != logged.last_login
                raise WrongPassword  # the caller's password check failed
        async with db.session_scope() as session:
            stamped = await UserRepository(session).get(user.id)
        assert stamped.last_login == logged.last_login  # the failed attempt left no stamp
    finally:
        async with db.session_scope() as session:
            await UserRepository(session).delete(user.id)
