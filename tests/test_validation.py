"""The value rules every entry point shares (models.base.check_value / validated and
exportsathi_db.validation), as pure unit tests: no database is needed to refuse a value."""

from __future__ import annotations

import json
import timeit
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy import Column, Integer, Numeric
from sqlalchemy.dialects.postgresql import JSONB

from exportsathi_db import InvalidDataError
from exportsathi_db.models import (
    Base,
    ChatMessage,
    ChatSession,
    MessageRole,
    Report,
    UserMetrics,
)
from exportsathi_db.models.base import JSON_ARRAY, AwareDateTime, check_value, validated
from exportsathi_db.validation import (
    MAX_JSON_DEPTH,
    check_aware,
    check_decimal,
    check_json,
    check_range,
)

COLUMNS: list[Column[Any]] = [
    column for table in Base.metadata.sorted_tables for column in table.columns
]
NUMERIC = [c for c in COLUMNS if isinstance(c.type, Numeric)]
INTEGER = [c for c in COLUMNS if isinstance(c.type, Integer)]
JSON = [c for c in COLUMNS if isinstance(c.type, JSONB)]
TIMESTAMPS = [c for c in COLUMNS if isinstance(c.type, AwareDateTime)]


def col(model: type[Base], key: str) -> Column[Any]:
    return cast(Column[Any], model.__table__.columns[key])


def name(column: Column[Any]) -> str:
    return f"{column.table.name}.{column.key}"


def ident(value: Any) -> str:
    try:
        return repr(value)[:24]
    except ValueError:  # an int past 4,300 digits
        return "huge int"


def refused(column: Column[Any], value: Any, match: str) -> InvalidDataError:
    """check_value refuses `value` for `column`, naming the column and saying `match`."""
    with pytest.raises(InvalidDataError, match=match) as info:
        check_value(column, value)
    assert info.value.field == column.key
    return info.value


def in_json(column: Column[Any], value: Any) -> Any:
    """`value` under key "v" of an object: the column's value, or its array's first item."""
    return [{"v": value}] if column.type is JSON_ARRAY else {"v": value}


def nested(depth: int) -> Any:
    """`depth` containers nested in one another, alternating objects and arrays."""
    value: Any = {}
    for level in range(depth - 1):
        value = {"n": value} if level % 2 else [value]
    return value


def test_every_kind_of_column_is_covered() -> None:
    assert {name(c) for c in NUMERIC} == {
        "reports.hs_code_confidence",
        "reports.estimated_cost",
        "user_metrics.cost_savings",
    }
    assert len(JSON) >= 15 and len(TIMESTAMPS) >= 20 and len(INTEGER) >= 8


# --- 1. numbers must be finite (a signalling NaN used to escape as a raw ValueError) ----------


@pytest.mark.parametrize("column", NUMERIC, ids=name)
@pytest.mark.parametrize("text", ["sNaN", "-sNaN", "NaN", "Infinity", "-Inf"])
def test_non_finite_decimals_are_refused(column: Column[Any], text: str) -> None:
    refused(column, Decimal(text), "must be a finite number")


@pytest.mark.parametrize("value", [Decimal("sNaN"), Decimal("NaN"), float("nan"), float("-inf")])
def test_check_range_refuses_non_finite_numbers_without_a_raw_error(value: Any) -> None:
    with pytest.raises(InvalidDataError, match="must be a finite number"):
        check_range("risk_score", value, 0, 100)


# --- 2. numeric(p, s): what the column holds exactly, or refused; never rounded -----------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (col(Report, "estimated_cost"), Decimal("0.00001")),
        (col(Report, "estimated_cost"), Decimal("1.005")),
        (col(Report, "estimated_cost"), Decimal("1E-1000000")),
        (col(Report, "hs_code_confidence"), Decimal("92.555")),
        (col(UserMetrics, "cost_savings"), Decimal("1.005")),
    ],
    ids=str,
)
def test_more_decimal_places_than_the_scale_are_refused(
    column: Column[Any], value: Decimal
) -> None:
    refused(column, value, "must have at most 2 decimal places")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (col(Report, "estimated_cost"), Decimal("1E+10")),
        (col(Report, "estimated_cost"), Decimal("-12345678901")),
        (col(Report, "estimated_cost"), 10**10),
        (col(Report, "estimated_cost"), 10**5000),  # its repr would raise ValueError
        (col(Report, "estimated_cost"), Decimal("1E+999999999")),
        (col(Report, "hs_code_confidence"), Decimal("1000")),
        (col(UserMetrics, "cost_savings"), Decimal("99999999999.5")),
    ],
    ids=ident,
)
def test_more_integer_digits_than_precision_minus_scale_are_out_of_range(
    column: Column[Any], value: Any
) -> None:
    error = refused(column, value, "out of range")
    assert len(str(error)) < 200


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (col(Report, "estimated_cost"), Decimal("9999999999.99")),
        (col(Report, "estimated_cost"), Decimal("1.50")),
        (col(Report, "estimated_cost"), Decimal("1.5000000000")),  # zeros lose nothing
        (col(Report, "estimated_cost"), Decimal("0E-10")),
        (col(Report, "estimated_cost"), Decimal("1E+3")),
        (col(Report, "estimated_cost"), 125_000),
        (col(Report, "hs_code_confidence"), Decimal("92.55")),
        (col(Report, "hs_code_confidence"), 100),
        (col(UserMetrics, "cost_savings"), Decimal("0.01")),
    ],
    ids=str,
)
def test_values_the_column_holds_exactly_are_accepted_unchanged(
    column: Column[Any], value: Any
) -> None:
    assert check_value(column, value) is value


@pytest.mark.parametrize("column", NUMERIC, ids=name)
@pytest.mark.parametrize("value", [92.5, 1.0, 0.1])
def test_floats_are_refused_for_numeric_columns(column: Column[Any], value: float) -> None:
    refused(column, value, "not a float")


@pytest.mark.parametrize("value", [True, "1.5", b"1", [1]])
def test_numeric_columns_take_only_numbers(value: Any) -> None:
    refused(col(Report, "estimated_cost"), value, "must be a Decimal or an int")


def test_the_column_rules_still_apply_after_the_exactness_rule() -> None:
    refused(col(Report, "hs_code_confidence"), Decimal("100.01"), "between 0 and 100")
    refused(col(Report, "estimated_cost"), Decimal("-0.01"), "between 0 and")


def test_check_decimal_without_precision_or_scale_only_refuses_non_numbers() -> None:
    assert check_decimal("x", Decimal("1.23456789E+50"), None, None) == Decimal("1.23456789E+50")
    with pytest.raises(InvalidDataError, match="finite"):
        check_decimal("x", Decimal("sNaN"), None, None)


# --- 7. integers: int4 (or the column's range), else out of range --------------------------------


@pytest.mark.parametrize("column", INTEGER, ids=name)
@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 2**63, 10**5000], ids=ident)
def test_integers_beyond_the_column_are_out_of_range(column: Column[Any], value: int) -> None:
    error = refused(column, value, "out of range")
    assert len(str(error)) < 200


@pytest.mark.parametrize("column", INTEGER, ids=name)
@pytest.mark.parametrize("value", [True, 1.0, Decimal(1), "1"])
def test_integer_columns_take_only_ints(column: Column[Any], value: Any) -> None:
    refused(column, value, "must be")


def test_counters_are_checked_through_validated() -> None:
    with pytest.raises(InvalidDataError, match="out of range") as info:
        validated(UserMetrics, {"timeline_reduction_days": 2**31})
    assert info.value.field == "timeline_reduction_days"


# --- 3, 4, 5. JSON: string keys, storable strings, bounded depth: one walk ---------------------


@pytest.mark.parametrize("column", JSON, ids=name)
@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({1: "a", "1": "b"}, r"\['v'\]\[1\]: keys must be strings; this one is int 1"),
        ({None: 1}, "keys must be strings; this one is NoneType"),
        ({True: 1}, "keys must be strings; this one is bool"),
        ({("a", 1): 1}, "keys must be strings; this one is tuple"),
        ({"a": [{"b": {2.5: 1}}]}, r"\['v'\]\['a'\]\[0\]\['b'\]\[2.5\]: keys must be"),
        ("\ud800", r"\['v'\]: must be valid Unicode \(no lone surrogates\)"),
        ({"a": "ok \udfff"}, r"\['v'\]\['a'\]: must be valid Unicode"),
        ({"\ud800": 1}, r"this key must be valid Unicode"),
        ([[["deep \ud83d\ude00"]]], r"\[0\]\[0\]\[0\]: must be valid Unicode"),
        ("x\x00y", "must not contain NUL characters"),
        ({"k\x00": 1}, "this key must not contain NUL characters"),
        (float("nan"), "must be a finite number"),
        ({"a": float("-inf")}, "must be a finite number"),
        (Decimal("1.5"), "Decimal is not a JSON type"),
        ({1, 2}, "set is not a JSON type"),
        (b"bytes", "bytes is not a JSON type"),
        (datetime(2026, 1, 1, tzinfo=UTC), "datetime is not a JSON type"),
        (10**4300, "at most 4300 digits"),
    ],
    ids=ident,
)
def test_json_that_cannot_be_stored_exactly_is_refused_naming_the_column(
    column: Column[Any], value: Any, match: str
) -> None:
    refused(column, in_json(column, value), match)


def test_json_depth_is_capped_at_max_json_depth_containers() -> None:
    column = col(Report, "report_data")
    deepest = {"v": nested(MAX_JSON_DEPTH - 1)}
    assert check_value(column, deepest) is deepest
    error = refused(column, {"v": nested(MAX_JSON_DEPTH)}, f"nested more than {MAX_JSON_DEPTH}")
    assert len(str(error)) < 300  # the path is shortened


def test_absurd_nesting_and_cycles_are_refused_without_recursion_errors() -> None:
    refused(col(Report, "report_data"), {"v": nested(3000)}, "nested more than")
    cycle: list[Any] = []
    cycle.append(cycle)
    refused(col(ChatMessage, "sources"), cycle, "nested more than")


def test_check_json_takes_any_json_value_at_the_top() -> None:
    values: list[Any] = ["text", 1, 1.5, True, None, [], {}]
    for value in values:
        assert check_json("x", value) is value
    with pytest.raises(InvalidDataError, match=r"^x: must be valid Unicode"):
        check_json("x", "\ud800")


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"": "", "हल्दी": "पाउडर", "emoji": "🌶️", "tab\t": "line\nbreak"},
        {"n": [0, -1, 2**63, 10**4299, 1.5, -0.0, 1e-300, True, False, None]},
        {MessageRole.USER: MessageRole.ASSISTANT},  # str subclasses are strings
        {"tuple": (1, 2), "list": [(3,)]},  # stored as arrays
        {"nested": nested(10)},
    ],
    ids=ident,
)
def test_ordinary_json_is_accepted_unchanged(value: Any) -> None:
    assert check_value(col(Report, "report_data"), value) is value
    json.dumps(value, allow_nan=False)  # and the repositories can encode it


def test_the_top_level_shape_of_object_and_array_columns_is_kept() -> None:
    refused(col(Report, "report_data"), [], "must be a JSON object")
    refused(col(ChatMessage, "sources"), {}, "must be a JSON array")


def test_orm_attribute_sets_and_validated_use_the_same_json_rules() -> None:
    with pytest.raises(InvalidDataError, match="keys must be strings") as info:
        Report(report_data={"a": {1: "x"}})
    assert info.value.field == "report_data"
    with pytest.raises(InvalidDataError, match="must be valid Unicode") as info:
        validated(ChatSession, {"context_data": {"lang": "\ud800"}})
    assert info.value.field == "context_data"


def test_the_json_walk_stays_fast_on_large_shallow_documents() -> None:
    """Measured against json.dumps, the check it replaced (the repositories encode anyway)."""
    document = [
        {"hs_code": f"0910.{i:02d}", "duty": 12.5 + i, "qty": i, "ok": i % 2 == 0, "note": None}
        for i in range(1000)
    ]

    def best(run: Any) -> float:
        return min(timeit.repeat(run, number=20, repeat=7))

    walk = best(lambda: check_json("report_data", document))
    dumps = best(lambda: json.dumps(document, allow_nan=False))
    assert walk < 3 * dumps, (walk, dumps)


# --- 6. timestamps the database (through asyncpg) cannot hold -------------------------------------

PLUS_14, MINUS_14 = timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))
OUT_OF_RANGE = [
    datetime(1, 1, 1, tzinfo=PLUS_14),  # year 0 in UTC: astimezone overflows
    datetime(1, 1, 1, 13, 59, tzinfo=PLUS_14),
    datetime(9999, 12, 31, 23, tzinfo=MINUS_14),  # year 10000 in UTC
    datetime.min.replace(tzinfo=UTC),  # asyncpg writes -infinity, reads back naive
    datetime.max.replace(tzinfo=UTC),  # asyncpg writes infinity, reads back naive
    datetime(9999, 12, 31, 9, 59, 59, 999999, tzinfo=MINUS_14),  # = datetime.max in UTC
]
IN_RANGE = [
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=MINUS_14),
    datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC),
    datetime.max.replace(tzinfo=PLUS_14),
    datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
]


@pytest.mark.parametrize("column", TIMESTAMPS, ids=name)
@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=str)
def test_instants_outside_the_range_are_refused_naming_the_column(
    column: Column[Any], value: datetime
) -> None:
    refused(column, value, "out of range: in UTC it must fall after 0001-01-01")


@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=str)
def test_check_aware_refuses_them_for_plain_arguments_too(value: datetime) -> None:
    with pytest.raises(InvalidDataError, match="out of range") as info:
        check_aware("now", value)
    assert info.value.field == "now"


@pytest.mark.parametrize("value", IN_RANGE, ids=str)
def test_instants_inside_the_range_are_accepted(value: datetime) -> None:
    assert check_value(col(ChatSession, "expires_at"), value) is value


def test_naive_datetimes_are_still_refused_first() -> None:
    with pytest.raises(InvalidDataError, match="timezone-aware"):
        check_aware("now", datetime(1, 1, 1))
