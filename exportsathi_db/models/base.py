"""Declarative base, naming convention, column mixins and the per-column value checks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

import uuid_utils.compat as uuid_utils
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    FetchedValue,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    TypeDecorator,
    event,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship

from exportsathi_db import validation
from exportsathi_db.errors import InvalidDataError

# Stable names for every constraint and index, so migrations and error translation can use them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

INT4_MAX = 2**31 - 1


def new_id() -> uuid.UUID:
    """A time-ordered UUIDv7: new rows land at the right edge of the primary-key index."""
    return uuid_utils.uuid7()


class JSONObject(MutableDict[str, Any]):
    """A JSONB object column whose top-level in-place changes are tracked by the ORM."""

    @classmethod
    def coerce(cls, key: str, value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise InvalidDataError(key, f"must be a JSON object (dict); got {type(value).__name__}")
        return super().coerce(key, value)


class JSONArray(MutableList[Any]):
    """A JSONB array column whose top-level in-place changes are tracked by the ORM."""

    @classmethod
    def coerce(cls, key: str, value: Any) -> Any:
        if value is not None and not isinstance(value, list):
            raise InvalidDataError(key, f"must be a JSON array (list); got {type(value).__name__}")
        return super().coerce(key, value)


JSON_OBJECT = JSONObject.as_mutable(JSONB)
JSON_ARRAY = JSONArray.as_mutable(JSONB)


class AwareDateTime(TypeDecorator[datetime]):
    """`timestamptz` that refuses naive datetimes on every path (ORM, Core, `text()` binds
    typed with it): PostgreSQL would read a naive value in the server's time zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return validation.check_aware("timestamp", value)  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: AwareDateTime()}  # noqa: RUF012
    # Fetch server-set values (created_at, updated_at) with RETURNING: no lazy refresh later.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={getattr(self, 'id', None)!r})"


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        primary_key=True,
        default=new_id,
        server_default=func.gen_random_uuid(),
        sort_order=-100,
    )


def foreign_key(table: str, *, nullable: bool = False, index: bool = True) -> Any:
    """An owner reference: `ON DELETE CASCADE`, NOT NULL unless said otherwise, indexed."""
    return mapped_column(
        ForeignKey(f"{table}.id", ondelete="CASCADE"), nullable=nullable, index=index
    )


def children(back_populates: str, **options: Any) -> Any:
    """The parent side of an owner relationship: never lazy-loaded, deleted by the database."""
    return relationship(
        back_populates=back_populates,
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        **options,
    )


class CreatedAtMixin:
    created_at: Mapped[datetime] = mapped_column(
        nullable=False, server_default=func.now(), sort_order=100
    )


class TimestampMixin(CreatedAtMixin):
    # Set by the shared BEFORE UPDATE trigger, whoever updates the row.
    updated_at: Mapped[datetime] = mapped_column(
        nullable=False, server_default=func.now(), server_onupdate=FetchedValue(), sort_order=101
    )


def check_value(column: Column[Any], value: Any) -> Any:
    """Check one value against its column's type and declared rules, before any SQL is sent."""
    if value is None:
        return value
    field, kind, info = column.key, column.type, column.info
    if "choices" in info:
        validation.check_choice(field, value, info["choices"])
    if "check" in info:
        info["check"](field, value)
    if isinstance(kind, String):
        validation.check_text(field, value, max_length=kind.length, nullable=True)
    elif isinstance(kind, AwareDateTime):
        validation.check_aware(field, value)
    elif isinstance(kind, Boolean):
        if not isinstance(value, bool):
            raise InvalidDataError(field, f"must be true or false; got {type(value).__name__}")
    elif isinstance(kind, Integer):
        if not isinstance(value, int):
            raise InvalidDataError(field, f"must be an integer; got {type(value).__name__}")
        low, high = info.get("range", (-INT4_MAX - 1, INT4_MAX))
        validation.check_range(field, value, low, high)
    elif isinstance(kind, Numeric):
        validation.check_decimal(field, value, kind.precision, kind.scale)
        if "range" in info:
            validation.check_range(field, value, *info["range"])
    elif isinstance(kind, UUID):
        if not isinstance(value, uuid.UUID):
            raise InvalidDataError(field, f"must be a UUID; got {type(value).__name__}")
    elif isinstance(kind, JSONB):
        if kind is JSON_OBJECT and not isinstance(value, dict):
            raise InvalidDataError(
                field, f"must be a JSON object (dict); got {type(value).__name__}"
            )
        if kind is JSON_ARRAY and not isinstance(value, list):
            raise InvalidDataError(
                field, f"must be a JSON array (list); got {type(value).__name__}"
            )
        validation.check_json(field, value)
    return value


def validated(model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    """Check values meant for a Core INSERT/UPDATE of `model` as attribute sets are, and refuse
    None for NOT NULL columns."""
    columns = model.__table__.columns
    for key, value in values.items():
        if key not in columns:
            raise InvalidDataError(key, f"is not a column of {model.__tablename__}")
        if value is None and not columns[key].nullable:
            raise InvalidDataError(key, "is required")
        check_value(cast(Column[Any], columns[key]), value)
    return values


@event.listens_for(Base, "mapper_configured", propagate=True)
def _install_value_checks(mapper: Mapper[Any], cls: type[Any]) -> None:
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if isinstance(column, Column):
            event.listen(
                prop.class_attribute,
                "set",
                lambda _t, value, _o, _i, column=column: check_value(column, value),
                retval=True,
            )
