"""Read models of users."""

import dataclasses
import uuid
from datetime import datetime

from exportsathi_db.views.base import read_model


@read_model
class UserView:
    """An account and its business profile. The password hash is there for login checks and
    never in the repr (reprs end up in logs); leave it out of API responses."""

    id: uuid.UUID
    email: str
    password_hash: str = dataclasses.field(repr=False)
    business_type: str
    company_size: str
    company_name: str | None
    monthly_volume: int | None
    last_login: datetime | None
    created_at: datetime
    updated_at: datetime
