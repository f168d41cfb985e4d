#!/usr/bin/env python3
"""
Write constraints.txt: every runtime dependency of tenantgw (the closure of
setup.cfg's install_requires, extras included, test and dev extras not),
pinned to the version installed in the environment this runs in.

    .venv/bin/python scripts/update-constraints.py            # rewrite constraints.txt
    .venv/bin/python scripts/update-constraints.py --check    # exit 1 if it is stale

The Dockerfile installs the wheel with ``pip install --constraint
constraints.txt`` and then refuses to build if anything installed is not
pinned here, so the image gets exactly these versions.  Environment markers
are evaluated for the image's Python (``--python``, default: the version in
the Dockerfile's PYTHON_IMAGE), not for the interpreter running this script:
a dependency needed only on the image's Python must still be pinned.
Run it after changing install_requires or upgrading the dev venv
(``bash scripts/dev-install.sh`` then ``pip install -U ...``).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import platform
import re
import sys

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = "tenantgw"


def image_python(dockerfile: str = os.path.join(ROOT, "Dockerfile")) -> str:
    """The X.Y of C{ARG PYTHON_IMAGE=python:X.Y...} in the Dockerfile."""
    with open(dockerfile) as f:
        match = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)", f.read(), re.MULTILINE)
    if match is None:
        raise SystemExit("update-constraints: no ARG PYTHON_IMAGE=python:X.Y in the Dockerfile")
    return match.group(1)


def marker_environment(python: str) -> dict[str, str]:
    environment = dict(default_environment())
    environment["python_version"] = python
    environment["python_full_version"] = f"{python}.0"
    environment["implementation_name"] = "cpython"
    environment["platform_python_implementation"] = "CPython"
    environment["sys_platform"] = "linux"
    environment["platform_system"] = "Linux"
    environment["os_name"] = "posix"
    return environment


def runtime_closure(python: str, project: str = PROJECT) -> dict[str, str]:
    """Canonical name -> installed version, for every runtime dependency."""
    environment = marker_environment(python)
    pinned: dict[str, str] = {}
    missing: list[str] = []
    # (distribution, extras requested of it)
    todo: list[tuple[str, frozenset[str]]] = [(project, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        canonical = canonicalize_name(distribution.metadata["Name"])
        if canonical != canonicalize_name(project):
            pinned[canonical] = distribution.version
        for text in distribution.requires or ():
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({**environment, "extra": extra})
                for extra in (extras or {""})
            )
            if wanted:
                todo.append((requirement.name, frozenset(requirement.extras)))
    if missing:
        raise SystemExit(
            "update-constraints: not installed here, so not pinnable: " + ", ".join(sorted(missing))
        )
    return pinned


def render(python: str) -> str:
    lines = [
        "# Runtime dependencies of tenantgw, pinned: the Dockerfile installs with",
        "# `pip install --constraint constraints.txt` and refuses anything not listed.",
        f"# Resolved in the development venv (Python {platform.python_version()}),",
        f"# markers evaluated for the image's Python {python}.",
        "# Regenerate: .venv/bin/python scripts/update-constraints.py",
    ]
    lines += [f"{name}=={version}" for name, version in sorted(runtime_closure(python).items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if constraints.txt is stale")
    parser.add_argument("--python", default=None, help="X.Y the markers are evaluated for")
    parser.add_argument("--output", default=os.path.join(ROOT, "constraints.txt"))
    args = parser.parse_args()
    text = render(args.python or image_python())
    if args.check:
        try:
            with open(args.output) as f:
                current = f.read()
        except OSError:
            current = ""
        strip = lambda s: [line for line in s.splitlines() if not line.startswith("#")]  # noqa: E731
        if strip(current) != strip(text):
            print(f"{args.output} is stale; run scripts/update-constraints.py", file=sys.stderr)
            return 1
        return 0
    with open(args.output, "w") as f:
        f.write(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
