"""
Checks for documents written by someone we do not trust, collecting every
problem with its field path (C{routes[2].backends[0].port}) instead of
stopping at the first.

Shared by every dialect's translator (the Tenant ConfigMap's tenant.yaml,
Gateway API objects, Ingress annotations) so that a refusal reads the same
whichever object it came from.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from attrs import define

from tenantgw.config.model import FieldError

T = TypeVar("T")


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def or_default(value: T | None, default: T) -> T:
    return default if value is None else value


def describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


class Checker:
    """
    Collects errors instead of raising them, so the tenant sees all of them.

    On a bad value a check records an error and returns L{None}; callers
    then substitute a placeholder so that parsing can go on and find the
    next problem.  Placeholders never escape: L{parse_tenant_document}
    raises whenever anything was recorded.
    """

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def wrong_type(self, path: str, expected: str, value: object) -> None:
        hint = ""
        if expected == "a string" and isinstance(value, (bool, int, float)):
            hint = " (quote it: YAML reads yes/no/on/off and numbers as non-strings)"
        self.fail(path, f"expected {expected}, got {describe(value)}{hint}")

    def string(
        self,
        value: object,
        path: str,
        validate: Callable[[str], str] | None = None,
    ) -> str | None:
        if not isinstance(value, str):
            self.wrong_type(path, "a string", value)
            return None
        if validate is None:
            return value
        try:
            return validate(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    def integer(self, value: object, path: str, low: int, high: int) -> int | None:
        # bool is an int subclass; "port: true" must not mean port 1.
        if isinstance(value, bool) or not isinstance(value, int):
            self.wrong_type(path, "an integer", value)
            return None
        if not low <= value <= high:
            self.fail(path, f"must be between {low} and {high}, got {value}")
            return None
        return value

    def number(
        self,
        value: object,
        path: str,
        low: float,
        high: float,
        *,
        low_exclusive: bool = False,
    ) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.wrong_type(path, "a number", value)
            return None
        number = float(value)
        if not math.isfinite(number):
            self.fail(path, "must be a finite number")
            return None
        too_low = number <= low if low_exclusive else number < low
        if too_low or number > high:
            lower = f"greater than {low:g}" if low_exclusive else f"at least {low:g}"
            self.fail(path, f"must be {lower} and at most {high:g}, got {value}")
            return None
        return number

    def boolean(self, value: object, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.wrong_type(path, "true or false", value)
            return None
        return value

    def choice(self, value: object, path: str, options: Sequence[str]) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        if text not in options:
            self.fail(path, f"must be one of {', '.join(options)}, got {text!r}")
            return None
        return text

    def mapping(self, value: object, path: str, fields: Sequence[str]) -> Section | None:
        """Check C{value} is a mapping holding only C{fields}."""
        if not isinstance(value, Mapping):
            self.wrong_type(path, "a mapping", value)
            return None
        known: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.fail(
                    join_path(path, str(key)),
                    f"field names must be strings, got {describe(key)}",
                )
            elif key not in fields:
                self.fail(join_path(path, key), "unknown field" + suggest(key, fields))
            else:
                known[key] = item
        return Section(self, path, known)

    def entries(self, value: object, path: str, max_entries: int) -> list[tuple[str, str, object]]:
        """A mapping with free-form string keys, as (key, path, value)."""
        if not isinstance(value, Mapping):
            self.wrong_type(path, "a mapping", value)
            return []
        if len(value) > max_entries:
            self.fail(path, f"at most {max_entries} entries are allowed, got {len(value)}")
            return []
        result = []
        for key, item in value.items():
            if isinstance(key, str):
                result.append((key, join_path(path, key), item))
            else:
                self.fail(join_path(path, str(key)), f"names must be strings, got {describe(key)}")
        return result


def suggest(key: str, fields: Sequence[str]) -> str:
    by_case = {field.lower(): field for field in fields}
    close = by_case.get(key.lower()) or next(
        iter(difflib.get_close_matches(key, fields, n=1, cutoff=0.7)), None
    )
    return f" (did you mean {close!r}?)" if close else ""


@define
class Section:
    """A mapping of the document that passed L{Checker.mapping}, with its path."""

    checker: Checker
    path: str
    fields: Mapping[str, object]

    def at(self, key: str) -> str:
        return join_path(self.path, key)

    def has(self, key: str) -> bool:
        # An explicit null is the same as leaving the field out.
        return self.fields.get(key) is not None

    def raw(self, key: str) -> object:
        return self.fields.get(key)

    def missing(self, key: str) -> None:
        self.checker.fail(self.at(key), "required field is missing")

    def string(
        self,
        key: str,
        validate: Callable[[str], str] | None = None,
        *,
        required: bool = False,
    ) -> str | None:
        if not self.has(key):
            if required:
                self.missing(key)
            return None
        return self.checker.string(self.raw(key), self.at(key), validate)

    def integer(self, key: str, low: int, high: int) -> int | None:
        if not self.has(key):
            return None
        return self.checker.integer(self.raw(key), self.at(key), low, high)

    def number(
        self, key: str, low: float, high: float, *, low_exclusive: bool = False
    ) -> float | None:
        if not self.has(key):
            return None
        return self.checker.number(
            self.raw(key), self.at(key), low, high, low_exclusive=low_exclusive
        )

    def boolean(self, key: str) -> bool | None:
        if not self.has(key):
            return None
        return self.checker.boolean(self.raw(key), self.at(key))

    def choice(self, key: str, options: Sequence[str]) -> str | None:
        if not self.has(key):
            return None
        return self.checker.choice(self.raw(key), self.at(key), options)

    def section(self, key: str, fields: Sequence[str]) -> Section | None:
        if not self.has(key):
            return None
        return self.checker.mapping(self.raw(key), self.at(key), fields)

    def items(self, key: str, max_items: int) -> list[tuple[str, object]]:
        """The elements of a list field, each with its own path."""
        if not self.has(key):
            return []
        value, path = self.raw(key), self.at(key)
        if not isinstance(value, list):
            self.checker.wrong_type(path, "a list", value)
            return []
        if len(value) > max_items:
            self.checker.fail(path, f"at most {max_items} items are allowed, got {len(value)}")
            return []
        return [(f"{path}[{index}]", item) for index, item in enumerate(value)]
