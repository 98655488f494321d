"""One repository per aggregate; each takes an AsyncSession and never commits."""

from exportsathi_db.repositories.base import Page
from exportsathi_db.repositories.users import UserRepository

__all__ = ["Page", "UserRepository"]
