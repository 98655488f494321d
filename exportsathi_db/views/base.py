"""What every read model shares: frozen, slotted dataclasses whose fields are, in order, the
columns a repository SELECTs, so a row becomes a read model with `View(*row)`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def read_model(cls: type[T]) -> type[T]:
    """Make `cls` a frozen, slotted dataclass: immutable, no `__dict__`, no reference cycles."""
    return dataclasses.dataclass(frozen=True, slots=True)(cls)


def column_list(view: type[Any], alias: str | None = None) -> str:
    """The SELECT/RETURNING list that builds `view` positionally (`alias.` before each name)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + field.name for field in dataclasses.fields(view))


def from_row(view: Callable[..., T], row: Any) -> T:
    """`view` from a row whose columns are `column_list(view)`, in order."""
    return view(*row)
