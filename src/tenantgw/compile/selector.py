"""
Kubernetes label selectors (``--namespace-selector``), parsed once.

Supports the same grammar as ``kubectl -l``: ``k=v``, ``k==v``, ``k!=v``,
``k in (a,b)``, ``k notin (a,b)``, ``k`` and ``!k``, comma-separated and ANDed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from attrs import frozen

Requirement = Callable[[Mapping[str, str]], bool]

# Tokens are taken loosely here and validated by _check_key / _check_value,
# so that a bad key gets a message saying what is wrong with it.  "in" and
# "notin" must be separated from the key by whitespace ("env in (a)"; before,
# "envin(a)" was silently read as "env in (a)"), as in Kubernetes' own lexer.
_SET = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)(?:\s+(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")
_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class SelectorError(ValueError):
    pass


def _check_key(key: str, part: str) -> str:
    """
    A label key as Kubernetes defines it: C{[prefix/]name}, the prefix a DNS
    subdomain of at most 253 characters, the name at most 63 characters of
    alphanumerics, C{-}, C{_} and C{.}, starting and ending alphanumeric.

    Checked against Kubernetes' own rules, not just a character class:
    C{a//b}, C{-x} or C{k in (a b)} could never match a real label, and a typo
    in C{--namespace-selector} should stop the gateway at startup, not
    silently select no namespace.
    """
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise SelectorError(f"label key {key!r} has an invalid prefix in {part.strip()!r}")
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise SelectorError(f"label key {key!r} is not a valid label name in {part.strip()!r}")
    return key


def _check_value(value: str, part: str) -> str:
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        raise SelectorError(f"label value {value!r} is not valid in {part.strip()!r}")
    return value


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


# Each requirement is a closure over its own key and values.  As in Kubernetes,
# "!=" and "notin" also match objects that do not have the label at all.


def _equals(key: str, value: str) -> Requirement:
    return lambda labels: labels.get(key) == value


def _differs(key: str, value: str) -> Requirement:
    return lambda labels: labels.get(key) != value


def _in(key: str, values: frozenset[str]) -> Requirement:
    # The str check: a hand-written manifest may hold an unhashable label value
    # (a list), and a set lookup on it would raise instead of not matching.
    return lambda labels: isinstance(labels.get(key), str) and labels[key] in values


def _not_in(key: str, values: frozenset[str]) -> Requirement:
    return lambda labels: not (isinstance(labels.get(key), str) and labels[key] in values)


def _present(key: str) -> Requirement:
    return lambda labels: key in labels


def _absent(key: str) -> Requirement:
    return lambda labels: key not in labels


@frozen
class LabelSelector:
    text: str
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        requirements: list[Requirement] = []
        for part in _split_top_level(text or ""):
            eq = _EQ.match(part)
            if eq:
                key, op, value = eq.groups()
                _check_key(key, part)
                _check_value(value, part)
                requirements.append(_differs(key, value) if op == "!=" else _equals(key, value))
                continue
            match = _SET.match(part)
            if not match:
                raise SelectorError(f"cannot parse label selector requirement {part.strip()!r}")
            negated, key, op, values_text = match.groups()
            _check_key(key, part)
            if op:
                if negated:
                    raise SelectorError(f"'!' cannot be combined with {op}: {part.strip()!r}")
                values = frozenset(
                    _check_value(v.strip(), part) for v in values_text.split(",") if v.strip()
                )
                if not values:
                    # Kubernetes refuses an empty set: "k in ()" would match
                    # nothing and "k notin ()" everything.
                    raise SelectorError(f"{op} needs at least one value: {part.strip()!r}")
                requirements.append(_in(key, values) if op == "in" else _not_in(key, values))
            else:
                requirements.append(_absent(key) if negated else _present(key))
        return cls(text or "", tuple(requirements))

    @classmethod
    def from_object(cls, selector: object) -> LabelSelector:
        """
        A ``metav1.LabelSelector`` (``matchLabels``, ``matchExpressions``), as
        Gateway API ``allowedRoutes.namespaces.selector`` writes it.  An empty
        selector matches everything, as in Kubernetes.
        """
        if not isinstance(selector, Mapping):
            raise SelectorError("a label selector must be a mapping")
        requirements: list[Requirement] = []
        match_labels = selector.get("matchLabels") or {}
        if not isinstance(match_labels, Mapping):
            raise SelectorError("matchLabels must be a mapping")
        parts = []
        for key, value in match_labels.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SelectorError("matchLabels keys and values must be strings")
            _check_key(key, key)
            _check_value(value, key)
            requirements.append(_equals(key, value))
            parts.append(f"{key}={value}")
        expressions = selector.get("matchExpressions") or []
        if not isinstance(expressions, list):
            raise SelectorError("matchExpressions must be a list")
        for expression in expressions:
            if not isinstance(expression, Mapping):
                raise SelectorError("each matchExpressions item must be a mapping")
            key, op = expression.get("key"), expression.get("operator")
            values = expression.get("values") or []
            if not isinstance(key, str) or not isinstance(values, list):
                raise SelectorError("matchExpressions need a string key and a list of values")
            _check_key(key, key)
            checked = frozenset(_check_value(str(v), key) for v in values)
            if op in ("In", "NotIn"):
                if not checked:
                    raise SelectorError(f"operator {op} needs at least one value")
                requirements.append(_in(key, checked) if op == "In" else _not_in(key, checked))
                word = "in" if op == "In" else "notin"
                parts.append(f"{key} {word} ({','.join(sorted(checked))})")
            elif op in ("Exists", "DoesNotExist"):
                if checked:
                    raise SelectorError(f"operator {op} takes no values")
                requirements.append(_present(key) if op == "Exists" else _absent(key))
                parts.append(key if op == "Exists" else f"!{key}")
            else:
                raise SelectorError(f"unknown operator {op!r} (In, NotIn, Exists, DoesNotExist)")
        return cls(",".join(parts), tuple(requirements))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement(labels) for requirement in self.requirements)


MATCH_ALL = LabelSelector("", ())
