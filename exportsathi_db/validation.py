"""Checks applied to values before any SQL is sent (used by the models' validators).

Each rule lives in one function here; `models.base.check_value` picks the ones a column's
type and `info` call for, so the ORM, `validated()` and the repositories all share them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from exportsathi_db.errors import InvalidDataError

# JSON containers nested deeper than this are refused. Real documents nest a handful of
# levels; PostgreSQL (stack depth) and Python's json (recursion limit) fail somewhere past
# a thousand, with errors that name no field.
MAX_JSON_DEPTH = 100
# Python's json cannot write (or read back) an int of more digits (int_max_str_digits).
_JSON_INT_LIMIT = 10**4300
# asyncpg stores these two instants as -infinity and infinity, and reads them back naive.
_FIRST_UTC = datetime.min.replace(tzinfo=UTC)
_LAST_UTC = datetime.max.replace(tzinfo=UTC)

# Modular-crypt and framework formats of the common password hashing schemes.
PASSWORD_HASH_PATTERN = re.compile(
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


def _shown(value: Any) -> str:
    """`repr(value)` for an error message: at most 60 characters, and never raising (the repr
    of an int past 4,300 digits does)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an int of {value.bit_length()} bits"
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def check_choice(field: str, value: Any, allowed: Iterable[str], *, nullable: bool = False) -> Any:
    if value is None and nullable:
        return value
    choices = tuple(allowed)
    if value not in choices:
        raise InvalidDataError(field, f"must be one of {', '.join(choices)}; got {_shown(value)}")
    return value


def _is_finite(value: int | float | Decimal) -> bool:
    if isinstance(value, Decimal):
        return value.is_finite()  # math.isfinite raises ValueError on a signalling NaN
    return isinstance(value, int) or math.isfinite(value)


def check_range(
    field: str, value: Any, low: int | Decimal | None, high: int | Decimal | None = None
) -> Any:
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidDataError(field, f"must be a number; got {type(value).__name__}")
    if not _is_finite(value):
        raise InvalidDataError(field, "must be a finite number (no NaN or infinity)")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidDataError(field, f"is out of range: must be {bounds}; got {_shown(value)}")
    return value


def _decimal_places(value: Decimal) -> int:
    """Digits after the point of a finite Decimal, trailing zeros not counted (1.50 has 1)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    coefficient = "".join(map(str, digits)).rstrip("0")
    return max(0, -exponent - (len(digits) - len(coefficient))) if coefficient else 0


def check_decimal(field: str, value: Any, precision: int | None, scale: int | None) -> Any:
    """A number a `numeric(precision, scale)` column holds exactly as given, never rounded.

    Floats are refused: binary floats are inexact (92.555 is 92.55499...), and what the
    column would keep of one depends on the value; pass a Decimal (or an int).
    """
    if value is None:
        return value
    if isinstance(value, float):
        raise InvalidDataError(
            field, "must be a Decimal or an int, not a float (inexact); e.g. Decimal('92.55')"
        )
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise InvalidDataError(field, f"must be a Decimal or an int; got {type(value).__name__}")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidDataError(field, "must be a finite number (no NaN or infinity)")
        if scale is not None and _decimal_places(value) > scale:
            raise InvalidDataError(
                field,
                f"must have at most {scale} decimal places (numeric({precision}, {scale}) would"
                f" round it); got {_shown(value)}",
            )
    if precision is not None:
        limit = 10 ** (precision - (scale or 0))
        if not -limit < value < limit:
            raise InvalidDataError(
                field,
                f"is out of range: at most {precision - (scale or 0)} digits before the decimal"
                f" point (numeric({precision}, {scale})); got {_shown(value)}",
            )
    return value


EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_email(field: str, value: Any) -> Any:
    if not isinstance(value, str) or not EMAIL_PATTERN.match(value):
        raise InvalidDataError(field, "must be an email address like name@example.com")
    return value


def check_aware(field: str, value: Any) -> Any:
    """Reject naive datetimes (PostgreSQL would read them in the server's time zone), and
    instants outside what timestamptz round-trips through the driver."""
    if value is None:
        return value
    if not isinstance(value, datetime):
        raise InvalidDataError(field, f"must be a datetime; got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidDataError(field, "must be timezone-aware (e.g. datetime.now(UTC))")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01 at UTC+14 is still year 0 in UTC
        in_utc = _FIRST_UTC
    if not _FIRST_UTC < in_utc < _LAST_UTC:
        raise InvalidDataError(
            field,
            "is out of range: in UTC it must fall after 0001-01-01 00:00 and before"
            f" 9999-12-31 23:59:59.999999; got {value.isoformat()}",
        )
    return value


def check_password_hash(field: str, value: Any) -> Any:
    """Accept only recognisable password hashes, so plain passwords never reach the table."""
    if not isinstance(value, str) or len(value) > 255 or not PASSWORD_HASH_PATTERN.match(value):
        raise InvalidDataError(
            field,
            "must be a password hash (bcrypt, argon2, scrypt, pbkdf2, sha-crypt), not a password",
        )
    return value


def _text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store `value` as text (or in JSONB), or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (no lone surrogates)"
    return None


def check_text(field: str, value: Any, *, max_length: int | None = None, nullable: bool) -> Any:
    if value is None:
        if nullable:
            return value
        raise InvalidDataError(field, "is required")
    if not isinstance(value, str):
        raise InvalidDataError(field, f"must be a string; got {type(value).__name__}")
    problem = _text_problem(value)
    if problem is not None:
        raise InvalidDataError(field, problem)
    if max_length is not None and len(value) > max_length:
        raise InvalidDataError(field, f"must be at most {max_length} characters")
    return value


class _Refused(Exception):
    """A JSON value that cannot be stored as given; `path` grows as the walk unwinds."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[Any] = []


def check_json(field: str, value: Any) -> Any:
    """A value JSONB stores and gives back exactly, checked in one walk before any SQL:

    dicts with string keys only (json.dumps turns 1 into "1", so `{1: 'a', '1': 'b'}` would
    lose a value), lists (or tuples, stored as arrays), strings without NUL or lone
    surrogates, finite floats, ints, bools and None, at most MAX_JSON_DEPTH containers deep.
    The message says where, e.g. `report_data: at ['items'][3]: keys must be strings; ...`.
    """
    try:
        if isinstance(value, (dict, list, tuple)):
            _walk(value, 1)
        else:
            _check_scalar(value)
    except _Refused as refused:
        steps = [f"[{_shown(step)}]" for step in reversed(refused.path)]
        where = "".join(steps[:10]) + (f"... ({len(steps)} levels)" if len(steps) > 10 else "")
        message = f"at {where}: {refused.reason}" if where else refused.reason
        raise InvalidDataError(field, message) from None
    return value


def _walk(container: dict[Any, Any] | list[Any] | tuple[Any, ...], depth: int) -> None:
    """Check a container `depth` levels deep and everything in it (one visit per value).

    The common leaves (plain ASCII strings, ints, floats, bools, None) are accepted inline:
    a call per leaf would double the cost of a large document.
    """
    if depth > MAX_JSON_DEPTH:
        raise _Refused(f"is nested more than {MAX_JSON_DEPTH} levels deep")
    is_object = isinstance(container, dict)
    pairs = container.items() if isinstance(container, dict) else enumerate(container)
    key: Any = None
    try:
        for key, item in pairs:
            if is_object and (key.__class__ is not str or "\x00" in key or not key.isascii()):
                _check_key(key)
            kind = item.__class__
            if kind is str:
                if "\x00" not in item and item.isascii():
                    continue
            elif kind is int:
                if -_JSON_INT_LIMIT < item < _JSON_INT_LIMIT:
                    continue
            elif kind is float:
                if math.isfinite(item):
                    continue
            elif kind is bool or item is None:
                continue
            if isinstance(item, (dict, list, tuple)):
                _walk(item, depth + 1)
            else:
                _check_scalar(item)
    except _Refused as refused:
        refused.path.append(key)
        raise


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise _Refused(f"keys must be strings; this one is {type(key).__name__} {_shown(key)}")
    problem = _text_problem(key)
    if problem is not None:
        raise _Refused(f"this key {problem}")


def _check_scalar(value: Any) -> None:
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem is not None:
            raise _Refused(problem)
    elif value is None or isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if not -_JSON_INT_LIMIT < value < _JSON_INT_LIMIT:
            raise _Refused("integers must have at most 4300 digits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused("must be a finite number (JSON has no NaN or infinity)")
    else:
        raise _Refused(
            f"{type(value).__name__} is not a JSON type (use dict, list, str, int, float, bool"
            " or None)"
        )
