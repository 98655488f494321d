"""UserRepository: accounts, logins and the email's case-insensitive uniqueness."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sqlalchemy import bindparam, delete, update
from sqlalchemy.orm.attributes import instance_state

from exportsathi_db import validation
from exportsathi_db.errors import AlreadyExistsError, InvalidDataError, NotFoundError
from exportsathi_db.models import User, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.repositories.base import Repository, check_id, translate_errors
from exportsathi_db.repositories.fastpath import adopt, adopt_loaded, columns, driver, shape

CREATED = (
    "email",
    "password_hash",
    "business_type",
    "company_size",
    "company_name",
    "monthly_volume",
)
UPDATABLE = frozenset(CREATED)


# Statements are built once: building one costs more than its round trip.
_COLUMNS = User.__table__.columns
_INSERT_SQL = f"""
    INSERT INTO users (id, {", ".join(CREATED)})
    VALUES ({", ".join(f"${n}" for n in range(1, len(CREATED) + 2))})
    ON CONFLICT (lower(email)) DO NOTHING
    RETURNING {columns(User)}"""
_BY_ID_SQL = f"SELECT {columns(User)} FROM users WHERE id = $1"
_BY_EMAIL_SQL = f"SELECT {columns(User)} FROM users WHERE lower(email) = lower($1)"
_LOGIN_SQL = f"UPDATE users SET last_login = now() WHERE id = $1 RETURNING {columns(User)}"
_DELETE = delete(User).where(User.id == bindparam("user_id")).returning(User.id)


@functools.lru_cache(maxsize=64)
def _update(names: tuple[str, ...]) -> Any:
    """UPDATE ... RETURNING of the given columns, built once per set of columns."""
    values = {name: bindparam(f"v_{name}", type_=_COLUMNS[name].type) for name in names}
    return (
        update(User)
        .where(User.id == bindparam("user_id"))
        .values(**values)
        .returning(User)
        .execution_options(populate_existing=True)
    )


class UserRepository(Repository):
    @translate_errors
    async def create(
        self,
        *,
        email: str,
        password_hash: str,
        business_type: str,
        company_size: str,
        company_name: str | None = None,
        monthly_volume: int | None = None,
    ) -> User:
        """Insert a user; `AlreadyExistsError` if the email is taken in any letter case.

        `ON CONFLICT DO NOTHING` keeps the caller's transaction usable after a duplicate.
        """
        values = validated(
            User,
            {
                "email": email,
                "password_hash": password_hash,
                "business_type": business_type,
                "company_size": company_size,
                "company_name": company_name,
                "monthly_volume": monthly_volume,
            },
        )
        raw = await driver(self.session)
        row = await raw.fetchrow(_INSERT_SQL, new_id(), *(values[name] for name in CREATED))
        if row is None:
            raise AlreadyExistsError(
                "email: an account with this email already exists",
                constraint="uq_users_lower_email",
            )
        return adopt(self.session, User, row)

    @translate_errors
    async def get_or_none(self, user_id: uuid.UUID) -> User | None:
        """As `session.get`: the session's own copy if it has one loaded, else one SELECT."""
        key = shape(User).mapper.identity_key_from_primary_key((check_id("user_id", user_id),))
        known: User | None = self.session.sync_session.identity_map.get(key)
        if known is not None and not instance_state(known).expired:
            return known
        row = await (await driver(self.session)).fetchrow(_BY_ID_SQL, user_id)
        if row is None:
            if known is not None:  # expired and deleted meanwhile: the session lets it go
                self.session.expunge(known)
            return None
        return adopt_loaded(self.session, User, row)

    async def get(self, user_id: uuid.UUID) -> User:
        """The user, or `NotFoundError`."""
        user = await self.get_or_none(user_id)
        if user is None:
            raise NotFoundError(f"user {user_id} not found")
        return user

    @translate_errors
    async def get_by_email(self, email: str) -> User | None:
        """Case-insensitive lookup (served by the unique index on lower(email))."""
        validation.check_text("email", email, nullable=False)
        row = await (await driver(self.session)).fetchrow(_BY_EMAIL_SQL, email)
        return None if row is None else adopt(self.session, User, row)

    @translate_errors
    async def update(self, user_id: uuid.UUID, **fields: Any) -> User:
        """Change profile fields; `updated_at` moves by trigger."""
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise InvalidDataError(
                ", ".join(sorted(unknown)),
                f"cannot be updated; allowed: {', '.join(sorted(UPDATABLE))}",
            )
        if not fields:
            return await self.get(user_id)
        values = validated(User, fields)
        params: dict[str, Any] = {f"v_{name}": value for name, value in values.items()}
        params["user_id"] = user_id
        statement = _update(tuple(sorted(values)))
        user: User | None = (await self.session.scalars(statement, params)).one_or_none()
        if user is None:
            raise NotFoundError(f"user {user_id} not found")
        return user

    @translate_errors
    async def record_login(self, user_id: uuid.UUID) -> User:
        """Stamp `last_login` with the transaction's time."""
        row = await (await driver(self.session)).fetchrow(_LOGIN_SQL, check_id("user_id", user_id))
        if row is None:
            raise NotFoundError(f"user {user_id} not found")
        return adopt(self.session, User, row)

    @translate_errors
    async def delete(self, user_id: uuid.UUID) -> None:
        """Delete the user and, by cascade, everything of theirs."""
        if (await self.session.execute(_DELETE, {"user_id": user_id})).first() is None:
            raise NotFoundError(f"user {user_id} not found")
