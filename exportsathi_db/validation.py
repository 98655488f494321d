"""Checks applied to values before any SQL is sent (used by the models' validators)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from exportsathi_db.errors import InvalidDataError

# Modular-crypt and framework formats of the common password hashing schemes.
_PASSWORD_HASH = re.compile(
    r"""^(?:
        \$2[abxy]\$\d{2}\$[./A-Za-z0-9]{53}                        # bcrypt
      | \$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+  # argon2
      | \$(?:scrypt|pbkdf2(?:-sha(?:1|256|512))?)\$[^\s$]+\$[^\s$]+\$[^\s$]+  # passlib
      | \$[56]\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43,86}    # sha-crypt
      | (?:pbkdf2_sha(?:1|256|512)|argon2|bcrypt_sha256|scrypt)\$\S{20,}     # Django
      | (?:pbkdf2:sha(?:1|256|512)(?::\d+)?|scrypt:\d+:\d+:\d+)\$\S+\$[0-9a-f]{32,}  # Werkzeug
    )$""",
    re.VERBOSE,
)


def check_choice(field: str, value: Any, allowed: Iterable[str], *, nullable: bool = False) -> Any:
    if value is None and nullable:
        return value
    choices = tuple(allowed)
    if value not in choices:
        raise InvalidDataError(field, f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_range(
    field: str, value: Any, low: int | Decimal | None, high: int | Decimal | None = None
) -> Any:
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidDataError(field, f"must be a number; got {type(value).__name__}")
    if isinstance(value, (float, Decimal)) and not math.isfinite(value):
        raise InvalidDataError(field, "must be a finite number (no NaN or infinity)")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidDataError(field, f"must be {bounds}; got {value!r}")
    return value


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_email(field: str, value: Any) -> Any:
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise InvalidDataError(field, "must be an email address like name@example.com")
    return value


def check_aware(field: str, value: Any) -> Any:
    """Reject naive datetimes: PostgreSQL would read them in the server's time zone."""
    if value is None:
        return value
    if not isinstance(value, datetime):
        raise InvalidDataError(field, f"must be a datetime; got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidDataError(field, "must be timezone-aware (e.g. datetime.now(UTC))")
    return value


def check_password_hash(field: str, value: Any) -> Any:
    """Accept only recognisable password hashes, so plain passwords never reach the table."""
    if not isinstance(value, str) or len(value) > 255 or not _PASSWORD_HASH.match(value):
        raise InvalidDataError(
            field,
            "must be a password hash (bcrypt, argon2, scrypt, pbkdf2, sha-crypt), not a password",
        )
    return value


def check_text(field: str, value: Any, *, max_length: int | None = None, nullable: bool) -> Any:
    if value is None:
        if nullable:
            return value
        raise InvalidDataError(field, "is required")
    if not isinstance(value, str):
        raise InvalidDataError(field, f"must be a string; got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidDataError(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidDataError(field, "must be valid Unicode (no lone surrogates)") from None
    if max_length is not None and len(value) > max_length:
        raise InvalidDataError(field, f"must be at most {max_length} characters")
    return value
