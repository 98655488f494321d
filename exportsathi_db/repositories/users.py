"""UserRepository: accounts, logins and the email's case-insensitive uniqueness."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from exportsathi_db import validation
from exportsathi_db.errors import AlreadyExistsError, InvalidDataError, NotFoundError
from exportsathi_db.models import User, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.repositories import executor
from exportsathi_db.repositories.base import Repository, check_id
from exportsathi_db.views import UserView
from exportsathi_db.views.base import column_list

CREATED = (
    "email",
    "password_hash",
    "business_type",
    "company_size",
    "company_name",
    "monthly_volume",
)
UPDATABLE = frozenset(CREATED)

_USER = column_list(UserView)
# ON CONFLICT DO NOTHING: a duplicate email leaves the caller's transaction usable.
INSERT = f"""INSERT INTO users (id, {", ".join(CREATED)})
VALUES ({", ".join(f"${n}" for n in range(1, len(CREATED) + 2))})
ON CONFLICT (lower(email)) DO NOTHING
RETURNING {_USER}"""
BY_ID = f"SELECT {_USER} FROM users WHERE id = $1"
BY_EMAIL = f"SELECT {_USER} FROM users WHERE lower(email) = lower($1)"
LOGIN = f"UPDATE users SET last_login = now() WHERE id = $1 RETURNING {_USER}"
LOGIN_BY_EMAIL = (
    f"UPDATE users SET last_login = now() WHERE lower(email) = lower($1) RETURNING {_USER}"
)
DELETE = "DELETE FROM users WHERE id = $1"


@functools.lru_cache(maxsize=64)
def update_sql(names: tuple[str, ...]) -> str:
    """$1 the user, $2… the new values of columns `names`; `updated_at` moves by trigger."""
    assigned = ", ".join(f"{name} = ${n}" for n, name in enumerate(names, start=2))
    return f"UPDATE users SET {assigned} WHERE id = $1 RETURNING {_USER}"


def _missing(user_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"user {user_id} not found")


class UserRepository(Repository):
    async def create(
        self,
        *,
        email: str,
        password_hash: str,
        business_type: str,
        company_size: str,
        company_name: str | None = None,
        monthly_volume: int | None = None,
    ) -> UserView:
        """Insert a user; `AlreadyExistsError` if the email is taken in any letter case."""
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
        row = await executor.fetchrow(
            self.session, INSERT, new_id(), *(values[name] for name in CREATED)
        )
        if row is None:
            raise AlreadyExistsError(
                "email: an account with this email already exists",
                constraint="uq_users_lower_email",
            )
        return UserView(*row)

    async def get_or_none(self, user_id: uuid.UUID) -> UserView | None:
        """The user, or None (1 statement)."""
        row = await executor.fetchrow(self.session, BY_ID, check_id("user_id", user_id))
        return None if row is None else UserView(*row)

    async def get(self, user_id: uuid.UUID) -> UserView:
        """The user, or `NotFoundError`."""
        user = await self.get_or_none(user_id)
        if user is None:
            raise _missing(user_id)
        return user

    async def get_by_email(self, email: str) -> UserView | None:
        """Case-insensitive lookup (served by the unique index on lower(email))."""
        validation.check_text("email", email, nullable=False)
        row = await executor.fetchrow(self.session, BY_EMAIL, email)
        return None if row is None else UserView(*row)

    async def update(self, user_id: uuid.UUID, **fields: Any) -> UserView:
        """Change profile fields in one UPDATE … RETURNING; `updated_at` moves by trigger."""
        check_id("user_id", user_id)
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise InvalidDataError(
                ", ".join(sorted(unknown)),
                f"cannot be updated; allowed: {', '.join(sorted(UPDATABLE))}",
            )
        if not fields:
            return await self.get(user_id)
        values = validated(User, fields)
        names = tuple(sorted(values))
        sql = update_sql(names)
        row = await executor.fetchrow(self.session, sql, user_id, *(values[n] for n in names))
        if row is None:
            raise _missing(user_id)
        return UserView(*row)

    async def record_login(self, user_id: uuid.UUID) -> UserView:
        """Stamp `last_login` with the transaction's time (1 statement)."""
        row = await executor.fetchrow(self.session, LOGIN, check_id("user_id", user_id))
        if row is None:
            raise _missing(user_id)
        return UserView(*row)

    async def login(self, email: str) -> UserView | None:
        """A login in one statement: stamp `last_login` of the user with this email (any
        letter case) and return them, password hash included, or None if there is none.

        Check the password against `password_hash` in the same unit of work and raise if it
        does not match: the unit of work then rolls the stamp back. One round trip instead
        of `get_by_email` + `record_login`.
        """
        validation.check_text("email", email, nullable=False)
        row = await executor.fetchrow(self.session, LOGIN_BY_EMAIL, email)
        return None if row is None else UserView(*row)

    async def delete(self, user_id: uuid.UUID) -> None:
        """Delete the user and, by cascade, everything of theirs."""
        if await executor.execute(self.session, DELETE, check_id("user_id", user_id)) == 0:
            raise _missing(user_id)
