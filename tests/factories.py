"""Small factories: each test makes exactly the rows it needs, with unique values."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from exportsathi_db.models import Report, User

# A well-formed bcrypt hash (of no particular password).
PASSWORD_HASH = "$2b$12$" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def make_user(session: AsyncSession, **overrides: Any) -> User:
    fields: dict[str, Any] = {
        "email": f"{unique('owner')}@example.in",
        "password_hash": PASSWORD_HASH,
        "business_type": "Manufacturing",
        "company_size": "Small",
        "company_name": "Jaipur Handicrafts Pvt Ltd",
        "monthly_volume": 500,
    } | overrides
    user = User(**fields)
    session.add(user)
    await session.flush()
    return user


async def make_report(session: AsyncSession, user: User, **overrides: Any) -> Report:
    fields: dict[str, Any] = {
        "user_id": user.id,
        "product_name": "Organic turmeric powder",
        "destination_country": "United States",
        "business_type": user.business_type,
        "company_size": user.company_size,
        "hs_code": "0910.30",
        "report_data": {"summary": "FDA registration and FSSAI export licence needed"},
    } | overrides
    report = Report(**fields)
    session.add(report)
    await session.flush()
    return report
