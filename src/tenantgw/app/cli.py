"""
``tenantgw check``: validate tenant configuration offline, for CI pipelines.

It runs the gateway's own loader, parser and compile step, so a file that
passes here is accepted by the gateway (given the same namespace policy),
and every refusal names the field path exactly as the gateway's status would.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

from tenantgw.compile.compiler import CompileOptions, compile_snapshot
from tenantgw.compile.selector import LabelSelector, SelectorError
from tenantgw.compile.snapshot import STATE_HOST_CONFLICT, STATE_REJECTED
from tenantgw.config.errors import TenantConfigError
from tenantgw.config.parse import parse_tenant_yaml
from tenantgw.sources.directory import ManifestError, load_manifests, manifest_files

FAILING_STATES = (STATE_REJECTED, STATE_HOST_CONFLICT)


def _is_bare_tenant_file(text: str) -> bool:
    """A tenant.yaml on its own, rather than Kubernetes manifests holding one."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return False
    return len(documents) == 1 and isinstance(documents[0], dict) and "kind" not in documents[0]


def _expand(paths: Sequence[str]) -> list[str]:
    files: list[str] = []
    for path in paths:
        files.extend(manifest_files(path) if os.path.isdir(path) else [path])
    return files


def check(paths: Sequence[str], options: CompileOptions, out: TextIO) -> int:
    """Prints every problem found and returns the process exit status."""
    failed = False
    objects: list[Any] = []
    for path in _expand(paths):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            print(f"{path}: cannot read: {e}", file=out)
            failed = True
            continue
        if _is_bare_tenant_file(text):
            try:
                parse_tenant_yaml(text)
            except TenantConfigError as e:
                for error in e.errors:
                    print(f"{path}: {error}", file=out)
                failed = True
            else:
                print(f"{path}: valid tenant.yaml", file=out)
            continue
        try:
            objects.extend(load_manifests(text))
        except ManifestError as e:
            print(f"{path}: {e}", file=out)
            failed = True
    snapshot = compile_snapshot(objects, options)
    for namespace, status in sorted(snapshot.statuses.items()):
        where = f"{namespace}/{status.config_map}"
        print(f"{where}: {status.state}", file=out)
        for message in status.messages:
            print(f"{where}: {message}", file=out)
        if status.state in FAILING_STATES:
            failed = True
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tenantgw",
        description="tenantgw tools. 'tenantgw check FILE...' validates tenant configuration.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser(
        "check",
        help="validate Tenant ConfigMaps, Namespaces and bare tenant.yaml files offline",
    )
    checker.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    checker.add_argument("--base-domain", default=None)
    checker.add_argument("--namespace-selector", default="")
    args = parser.parse_args(argv)
    try:
        selector = LabelSelector.parse(args.namespace_selector)
    except SelectorError as e:
        parser.error(f"--namespace-selector: {e}")
    options = CompileOptions(base_domain=args.base_domain, namespace_selector=selector)
    return check(args.paths, options, sys.stdout)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
