"""
Request-target normalization: the one reading of a path that routing, the
access rules and the backend all share.

A gateway that matches ``/admin`` but forwards ``/%61dmin``, ``//admin``,
``/admin;x`` or ``/public/..;/admin`` lets a client past the route's access
rules, because backends (Tomcat, Spring, nginx, most frameworks) serve all
of those as ``/admin``.  So, as Envoy does with ``normalize_path`` and
``merge_slashes``, the path is normalized once, before matching, and the
normalized form is what is forwarded:

  1. only visible ASCII; a fragment (``#``), a backslash or a malformed
     percent-escape refuses the request;
  2. escapes of unreserved characters are decoded (``%61`` -> ``a``,
     ``%2E`` -> ``.``), the other escapes are kept with upper-case hex;
     ``%00`` refuses the request; ``%2F`` and ``%5C`` follow
     L{PathPolicy.escaped_slashes};
  3. dot segments are removed (RFC 3986 section 5.2.4), including the
     ``..;x`` form that Tomcat treats as ``..``;
  4. runs of slashes are merged (L{PathPolicy.merge_slashes}).

Matching then ignores path parameters (``;x`` at the end of a segment),
since the backends that honour them route as if they were absent; the
forwarded path keeps them for the backend.  Queries are not touched, only
checked for the same characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from attrs import frozen

ESCAPED_SLASHES_REJECT = "reject"
ESCAPED_SLASHES_KEEP = "keep"
ESCAPED_SLASHES_UNESCAPE = "unescape"
ESCAPED_SLASH_ACTIONS = (ESCAPED_SLASHES_REJECT, ESCAPED_SLASHES_KEEP, ESCAPED_SLASHES_UNESCAPE)

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Visible ASCII except "#" (a fragment is never sent, RFC 9110 section 7.1)
# and "\" (which Windows and some Java backends read as "/").
_TARGET = re.compile(rb"[\x21\x22\x24-\x5b\x5d-\x7e]*\Z")
# A path needs the slow path only when one of these appears in it.
_SPECIAL = re.compile(rb"%|/\.|//|;")


@frozen
class PathPolicy:
    """The operator's choices (flags C{--merge-slashes}, C{--escaped-slashes})."""

    merge_slashes: bool = True
    escaped_slashes: str = ESCAPED_SLASHES_REJECT


DEFAULT_POLICY = PathPolicy()


@frozen
class NormalizedPath:
    """C{forward} goes to the backend; C{match} is what routes are compared with."""

    forward: bytes
    match: bytes


def valid_query(query: bytes) -> bool:
    """A query (without its "?") holds the same characters as a path."""
    return _TARGET.match(query) is not None


def normalize_path(raw: bytes, policy: PathPolicy = DEFAULT_POLICY) -> NormalizedPath | None:
    """
    The normalized form of an origin-form path (without its query), or
    L{None} when the path must be refused with a 400.
    """
    if not raw.startswith(b"/") or _TARGET.match(raw) is None:
        return None
    if _SPECIAL.search(raw) is None:
        return NormalizedPath(raw, raw)  # nearly every request: nothing to do
    if b"%" in raw:
        decoded = _decode_unreserved(raw, policy.escaped_slashes)
        if decoded is None:
            return None
        raw = decoded
    segments = raw.split(b"/")[1:]
    output: list[bytes] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        name = segment.partition(b";")[0]
        if name == b"..":
            if output:
                output.pop()
            if index == last:
                output.append(b"")
        elif name == b".":
            if index == last:
                output.append(b"")
        elif segment or not policy.merge_slashes or index == last:
            output.append(segment)
    forward = b"/" + b"/".join(output)
    if policy.merge_slashes and forward.startswith(b"//"):
        forward = forward[1:]
    if b";" not in forward:
        return NormalizedPath(forward, forward)
    match = b"/".join(segment.partition(b";")[0] for segment in forward.split(b"/"))
    return NormalizedPath(forward, match)


def _decode_unreserved(raw: bytes, escaped_slashes: str) -> bytes | None:
    parts = raw.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            return None
        code = int(part[:2], 16)
        rest = part[2:]
        if code == 0:
            return None
        if code in _UNRESERVED:
            out.append(bytes((code,)) + rest)
        elif code in (0x2F, 0x5C):
            if escaped_slashes == ESCAPED_SLASHES_REJECT:
                return None
            if escaped_slashes == ESCAPED_SLASHES_UNESCAPE:
                out.append(b"/" + rest)
            else:
                out.append(b"%" + part[:2].upper() + rest)
        else:
            out.append(b"%" + part[:2].upper() + rest)
    return b"".join(out)


def replace_prefix(path: bytes, matched: bytes, replacement: bytes) -> bytes:
    """
    Gateway API ReplacePrefixMatch: the matched prefix (element-wise, its
    trailing slash ignored) becomes C{replacement}, the rest is kept.
    C{/foo/bar} with C{/foo} -> C{/xyz} is C{/xyz/bar}; with C{/foo} -> C{/}
    (or empty) it is C{/bar}; C{/foo} itself becomes C{/xyz}.
    """
    rest = path[len(matched.rstrip(b"/")) :]
    result = replacement.rstrip(b"/") + rest
    if not result.startswith(b"/"):
        result = b"/" + result
    return result


_GROUP_REFERENCE = re.compile(rb"\$(\d)")


def expand_target(template: bytes, groups: Sequence[bytes | None]) -> bytes:
    """
    ingress-nginx rewrite-target: C{$1}..C{$9} become the path expression's
    groups (an unmatched or missing group is empty), as nginx's rewrite does.
    The result always starts with C{/}.
    """

    def group(found: re.Match[bytes]) -> bytes:
        number = int(found.group(1))
        if 1 <= number <= len(groups):
            return groups[number - 1] or b""
        return b""

    result = _GROUP_REFERENCE.sub(group, template)
    return result if result.startswith(b"/") else b"/" + result
