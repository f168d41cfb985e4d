"""
``tenantgw migrate FILE...``: what each Ingress and each of its ingress-nginx
annotations becomes in tenantgw, what is refused and why, like
ingress2gateway's notifications, for a team planning the switch.  Exit
status 1 when any Ingress would be Rejected, 0 otherwise, 2 on usage errors.

Class selection is left out on purpose: the Ingresses a team brings still
name their old class, and the question is what they would become.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, TextIO

from attrs import evolve

from tenantgw.plans.snapshot import ANY_HOST
from tenantgw.sources.directory import ManifestError, load_manifests, manifest_files
from tenantgw.translators.ingress import (
    ACCEPTED,
    CONTROLLER,
    IngressOptions,
    IngressStatus,
    translate_ingresses,
)


def migration_report(paths: Sequence[str]) -> tuple[list[IngressStatus], list[str]]:
    """Every Ingress in C{paths} as if it named our class; and unreadable files."""
    problems: list[str] = []
    ingresses: list[dict[str, Any]] = []
    files: list[str] = []
    for path in paths:
        files.extend(manifest_files(path) if os.path.isdir(path) else [path])
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = load_manifests(f.read())
        except (OSError, UnicodeDecodeError, ManifestError) as e:
            problems.append(f"{path}: {e}")
            continue
        for obj in loaded:
            if obj.get("kind") == "Ingress":
                body = dict(obj.get("spec") or {})
                body["ingressClassName"] = "tenantgw"
                meta = dict(obj.get("metadata") or {})
                meta.setdefault("namespace", "default")
                ingresses.append({**obj, "metadata": meta, "spec": body})
    ours = {
        "kind": "IngressClass",
        "metadata": {"name": "tenantgw"},
        "spec": {"controller": CONTROLLER},
    }
    translation = translate_ingresses(
        {"Ingress": ingresses, "IngressClass": [ours]}, IngressOptions()
    )
    hostless = {r.origin for r in translation.routes if ANY_HOST in r.hosts}
    statuses = [
        evolve(
            s,
            warnings=(
                *s.warnings,
                "a rule or defaultBackend without host is not served: in a shared gateway it"
                " would catch every host; give it a host the namespace may claim",
            ),
        )
        if s.key in hostless
        else s
        for s in translation.statuses
    ]
    return statuses, problems


def _status_json(status: IngressStatus) -> dict[str, Any]:
    return {
        "namespace": status.key.namespace,
        "name": status.key.name,
        "state": status.state,
        "reasons": list(status.reasons),
        "warnings": list(status.warnings),
        "annotations": [
            {"annotation": o.annotation, "value": o.value, "outcome": o.kind, "meaning": o.meaning}
            for o in status.outcomes
        ],
    }


def migrate(paths: Sequence[str], out: TextIO, output: str = "text") -> int:
    statuses, problems = migration_report(paths)
    refused = any(s.state != ACCEPTED for s in statuses) or bool(problems)
    if output == "json":
        json.dump(
            {
                "ok": not refused,
                "files": problems,
                "ingresses": [_status_json(s) for s in statuses],
            },
            out,
            indent=2,
        )
        out.write("\n")
        return 1 if refused else 0
    for problem in problems:
        print(f"error: {problem}", file=out)
    for status in statuses:
        print(f"Ingress {status.key.namespace}/{status.key.name}: {status.state}", file=out)
        for outcome in status.outcomes:
            print(
                f"  {outcome.annotation}={outcome.value!r}: {outcome.kind}: {outcome.meaning}",
                file=out,
            )
        for reason in status.reasons:
            print(f"  refused: {reason}", file=out)
        for warning in status.warnings:
            print(f"  warning: {warning}", file=out)
    accepted = sum(1 for s in statuses if s.state == ACCEPTED)
    print(
        f"{len(statuses)} Ingress(es): {accepted} served, {len(statuses) - accepted} refused",
        file=out,
    )
    return 1 if refused else 0
