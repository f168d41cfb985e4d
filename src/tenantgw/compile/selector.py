"""
Kubernetes label selectors (``--namespace-selector``), parsed once.

Supports the same grammar as ``kubectl -l``: ``k=v``, ``k==v``, ``k!=v``,
``k in (a,b)``, ``k notin (a,b)``, ``k`` and ``!k``, comma-separated and ANDed.
"""

from __future__ import annotations

import re
from typing import Callable, List, Mapping, Tuple

from attrs import frozen

Requirement = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


class SelectorError(ValueError):
    pass


def _split_top_level(text: str) -> List[str]:
    parts, depth, current = [], 0, []
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


@frozen
class LabelSelector:
    text: str
    requirements: Tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        requirements: List[Requirement] = []
        for part in _split_top_level(text or ""):
            eq = _EQ.match(part)
            if eq:
                key, op, value = eq.groups()
                if op == "!=":
                    requirements.append(lambda labels, k=key, v=value: labels.get(k) != v)
                else:
                    requirements.append(lambda labels, k=key, v=value: labels.get(k) == v)
                continue
            match = _SET.match(part)
            if not match:
                raise SelectorError(f"cannot parse label selector requirement {part.strip()!r}")
            negated, key, op, values_text = match.groups()
            if op:
                if negated:
                    raise SelectorError(f"'!' cannot be combined with {op}: {part.strip()!r}")
                values = frozenset(v.strip() for v in values_text.split(",") if v.strip())
                if op == "in":
                    requirements.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
                else:
                    requirements.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
            elif negated:
                requirements.append(lambda labels, k=key: k not in labels)
            else:
                requirements.append(lambda labels, k=key: k in labels)
        return cls(text or "", tuple(requirements))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement(labels) for requirement in self.requirements)


MATCH_ALL = LabelSelector("", ())
