"""
Reading Kubernetes objects as a source delivers them: plain mappings that
may be hand-written (a ``dir:`` source), so every accessor tolerates a
missing or mistyped field instead of raising.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Mapping
from typing import Any

KubeObject = Mapping[str, Any]

NEWEST = "9999"


def meta(obj: KubeObject) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def spec(obj: KubeObject) -> Mapping[str, Any]:
    value = obj.get("spec")
    return value if isinstance(value, Mapping) else {}


def name_of(obj: KubeObject) -> str:
    value = meta(obj).get("name")
    return value if isinstance(value, str) else ""


def namespace_of(obj: KubeObject) -> str:
    value = meta(obj).get("namespace")
    return value if isinstance(value, str) else ""


def labels_of(obj: KubeObject) -> Mapping[str, str]:
    value = meta(obj).get("labels")
    return value if isinstance(value, Mapping) else {}


def annotations_of(obj: KubeObject) -> Mapping[str, str]:
    value = meta(obj).get("annotations")
    return value if isinstance(value, Mapping) else {}


def timestamp_key(value: Any) -> str:
    """
    A creationTimestamp as a sortable UTC string, or C{"9999"} (newest of all)
    when there is none.

    Compared as instants, not text: a manifest read from a directory with an
    unquoted C{creationTimestamp} arrives as a C{datetime} whose C{str()} puts
    a space where the API's text has C{"T"}, and a non-UTC offset would
    compare by its wall-clock digits.  Host ownership ("the oldest object
    wins") hangs on this comparison.
    """
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str) and value:
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            return NEWEST
    else:
        return NEWEST
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def age_key(obj: KubeObject) -> tuple[str, str, str]:
    """
    Oldest first, then namespace/name: the order Gateway API and the
    contract use to settle conflicts, which never depends on event order.
    """
    return (timestamp_key(meta(obj).get("creationTimestamp")), namespace_of(obj), name_of(obj))


def secret_values(secret: KubeObject) -> dict[str, bytes]:
    """
    A Secret's values, decoded: ``data`` (base64; a value that does not
    decode is left out) with ``stringData`` over it, as the API server
    merges them on write.
    """
    values: dict[str, bytes] = {}
    data = secret.get("data")
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, str):
                try:
                    values[str(key)] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    continue
    string_data = secret.get("stringData")
    if isinstance(string_data, Mapping):
        for key, value in string_data.items():
            if isinstance(value, str):
                values[str(key)] = value.encode("utf-8")
    return values
