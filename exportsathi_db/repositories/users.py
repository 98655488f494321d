"""UserRepository: accounts, logins and the email's case-insensitive uniqueness."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from exportsathi_db.errors import AlreadyExistsError, InvalidDataError, NotFoundError
from exportsathi_db.models import User, new_id
from exportsathi_db.models.base import validated
from exportsathi_db.repositories.base import Repository, translate_errors

UPDATABLE = frozenset(
    {"email", "password_hash", "business_type", "company_size", "company_name", "monthly_volume"}
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
        statement = (
            insert(User)
            .values(id=new_id(), **values)
            .on_conflict_do_nothing(index_elements=[func.lower(User.email)])
            .returning(User)
        )
        user = (await self.session.scalars(statement)).one_or_none()
        if user is None:
            raise AlreadyExistsError(
                "email: an account with this email already exists",
                constraint="uq_users_lower_email",
            )
        return user

    @translate_errors
    async def get_or_none(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get(self, user_id: uuid.UUID) -> User:
        """The user, or `NotFoundError`."""
        user = await self.get_or_none(user_id)
        if user is None:
            raise NotFoundError(f"user {user_id} not found")
        return user

    @translate_errors
    async def get_by_email(self, email: str) -> User | None:
        """Case-insensitive lookup (served by the unique index on lower(email))."""
        statement = select(User).where(func.lower(User.email) == func.lower(email))
        return (await self.session.scalars(statement)).one_or_none()

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
        return await self._update(user_id, validated(User, fields))

    @translate_errors
    async def record_login(self, user_id: uuid.UUID) -> User:
        """Stamp `last_login` with the transaction's time."""
        return await self._update(user_id, {"last_login": func.now()})

    @translate_errors
    async def delete(self, user_id: uuid.UUID) -> None:
        """Delete the user and, by cascade, everything of theirs."""
        statement = delete(User).where(User.id == user_id).returning(User.id)
        if (await self.session.execute(statement)).first() is None:
            raise NotFoundError(f"user {user_id} not found")

    async def _update(self, user_id: uuid.UUID, values: dict[str, Any]) -> User:
        statement = (
            update(User)
            .where(User.id == user_id)
            .values(**values)
            .returning(User)
            .execution_options(populate_existing=True)
        )
        user = (await self.session.scalars(statement)).one_or_none()
        if user is None:
            raise NotFoundError(f"user {user_id} not found")
        return user
