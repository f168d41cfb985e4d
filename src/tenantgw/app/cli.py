"""
``tenantgw check``: validate tenant configuration offline, for CI pipelines;
``tenantgw --version``.

It runs the gateway's own loader, parser and compile step, so a file that
passes here is accepted by the gateway (given the same namespace policy),
and every refusal names the field path exactly as the gateway's status would.

What a tenant's CI holds is rarely the whole cluster: usually its Tenant
ConfigMap, perhaps its Services, never the operator's Namespace object nor
the EndpointSlices.  So by default:

- a ConfigMap whose Namespace is not among the files is checked as if that
  Namespace existed with no labels and no annotations (no extra hosts
  allowed, no ceilings), and a warning says so;
- a Service or Secret the config references but the files do not hold is a
  warning (the gateway would serve, with that backend or scope failing).

``--strict`` treats the files as the whole world instead: a missing
Namespace, Service or Secret, a Service without ready endpoints and a
ConfigMap the selector leaves out are errors.

Exit status: 0 when nothing is an error (warnings allowed), 1 when anything
is (a file that cannot be read or parsed, a Rejected or HostConflict
tenant, a certificate that does not serve, a second Tenant ConfigMap in a
namespace, and in ``--strict`` the cases above), 2 for a usage error.
``--output json`` prints one JSON document (see L{report_json}).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import yaml
from attrs import define, evolve, field

from tenantgw.compile.compiler import TENANT_LABEL, CompileOptions, compile_snapshot
from tenantgw.compile.gateway_api import status_json
from tenantgw.compile.selector import MATCH_ALL, LabelSelector, SelectorError
from tenantgw.config.errors import TenantConfigError
from tenantgw.config.namespace import ALLOWED_HOSTS_ANNOTATION
from tenantgw.config.parse import parse_tenant_yaml
from tenantgw.plans.snapshot import STATE_HOST_CONFLICT, STATE_REJECTED, Snapshot
from tenantgw.sources.directory import ManifestError, load_manifests, manifest_files
from tenantgw.status.ingress_report import IngressReport, ingress_reports
from tenantgw.translators.gateway_api import ObjectStatus
from tenantgw.translators.objects import labels_of, meta

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2  # argparse's own

STATE_NOT_SELECTED = "NotSelected"
FAILING_STATES = (STATE_REJECTED, STATE_HOST_CONFLICT)

# The first word of a status message that is a field path of tenant.yaml
# (or of the ConfigMap / Namespace holding it).
_PATH_ROOTS = ("hosts", "tls", "quota", "access", "routes", "data", "metadata")
_PATH = re.compile(
    r"^(?P<path>(?:" + "|".join(_PATH_ROOTS) + r")(?:\[\d+\]|\.[A-Za-z]\w*|\[\"[^\"]*\"\])*)"
    r"(?::\s+|\s+)(?P<rest>.*)$",
    re.DOTALL,
)
_NAMESPACE_PREFIX = re.compile(r"^Namespace [^:\s]+: ")
_LOST_HOST = re.compile(r"^host '(?P<host>[^']+)' is (already served by|the derived host of)")
_MISSING_REFERENCE = re.compile(r"^(Service|Secret) '[^']*' not found in this namespace")
# Messages of an accepted tenant that the gateway serves with: warnings.
_SERVES_ANYWAY = (
    re.compile(r"clamped to namespace ceiling|unset; namespace ceiling"),
    re.compile(r"^" + re.escape(f'metadata.annotations["{ALLOWED_HOSTS_ANNOTATION}"]')),
)


def version() -> str:
    try:
        return importlib.metadata.version("tenantgw")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


@define
class Problem:
    path: str
    message: str

    def json(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@define
class FileReport:
    file: str
    kind: str  # "tenant.yaml" (a bare file) or "manifests"
    errors: list[Problem] = field(factory=list)


@define
class TenantReport:
    namespace: str
    config_map: str | None
    file: str | None
    state: str
    serving: bool
    hosts: tuple[str, ...] = ()
    namespace_assumed: bool = False
    errors: list[Problem] = field(factory=list)
    warnings: list[Problem] = field(factory=list)
    backends: list[BackendReport] = field(factory=list)


# What each backend protocol means, as `tenantgw check` prints it.
PROTOCOL_TEXT = {
    "h1": "HTTP/1.1",
    "h2c": "HTTP/2 cleartext (h2c)",
    "tls": "TLS; HTTP/2 if the upstream offers h2 by ALPN, else HTTP/1.1",
}


@define
class BackendReport:
    """Which protocol the gateway speaks to one resolved backend (contract section 11)."""

    path: str
    service: str
    port: int
    protocol: str  # "h1", "h2c" or "tls"

    def json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "service": self.service,
            "port": self.port,
            "protocol": self.protocol,
        }

    def __str__(self) -> str:
        return (
            f"{self.path}: Service {self.service!r} port {self.port}:"
            f" {PROTOCOL_TEXT.get(self.protocol, self.protocol)}"
        )


@define
class ObjectReport:
    """A Gateway API object's status, as the elected replica would write it."""

    kind: str
    namespace: str
    name: str
    summary: str  # "Accepted", or the first failing condition
    status: dict[str, Any]


@define
class Report:
    strict: bool
    files: list[FileReport] = field(factory=list)
    tenants: list[TenantReport] = field(factory=list)
    # Each Ingress of our class, as its status and Events would say it.
    ingresses: list[IngressReport] = field(factory=list)
    objects: list[ObjectReport] = field(factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.errors for f in self.files) and not any(t.errors for t in self.tenants)


def split_message(message: str) -> Problem:
    """C{"routes[1].backends[0].port: must be ..."} -> (path, the rest)."""
    text = _NAMESPACE_PREFIX.sub("", message)
    match = _PATH.match(text)
    if match is None:
        return Problem("", message)
    return Problem(match.group("path"), match.group("rest"))


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


def _namespace_of(obj: Mapping[str, Any]) -> str:
    namespace = meta(obj).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else "default"


def _is_tenant_config_map(obj: Mapping[str, Any]) -> bool:
    labels = meta(obj).get("labels")
    return (
        obj.get("kind") == "ConfigMap"
        and isinstance(labels, Mapping)
        and labels.get(TENANT_LABEL) == "true"
    )


def _with_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """C{kubectl apply -n NS}: objects that name no namespace go to NS."""
    if obj.get("kind") == "Namespace" or meta(obj).get("namespace"):
        return obj
    return {**obj, "metadata": {**meta(obj), "namespace": namespace}}


def check_report(
    paths: Sequence[str],
    options: CompileOptions,
    *,
    strict: bool = False,
    default_namespace: str | None = None,
) -> Report:
    """Everything C{tenantgw check} finds in C{paths}, not yet printed."""
    report = Report(strict=strict)
    objects: list[dict[str, Any]] = []
    origin: dict[tuple[str, str], str] = {}  # (namespace, ConfigMap name) -> file
    for path in _expand(paths):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            report.files.append(FileReport(path, "manifests", [Problem("", f"cannot read: {e}")]))
            continue
        if _is_bare_tenant_file(text):
            file_report = FileReport(path, "tenant.yaml")
            try:
                parse_tenant_yaml(text)
            except TenantConfigError as e:
                file_report.errors = [Problem(error.path, error.message) for error in e.errors]
            report.files.append(file_report)
            continue
        try:
            loaded = load_manifests(text)
        except ManifestError as e:
            report.files.append(FileReport(path, "manifests", [Problem("", str(e))]))
            continue
        report.files.append(FileReport(path, "manifests"))
        for obj in loaded:
            if not isinstance(obj, dict):
                continue
            if default_namespace:
                obj = _with_namespace(obj, default_namespace)
            objects.append(obj)
            if _is_tenant_config_map(obj):
                origin[(_namespace_of(obj), str(meta(obj).get("name")))] = path

    # Namespace selection is decided here rather than by the compile step, so
    # that a Namespace missing from the files can be assumed into existence
    # without the selector (which it could never match) dropping it again.
    present = {str(meta(o).get("name")): o for o in objects if o.get("kind") == "Namespace"}
    selector = options.namespace_selector
    unselected = {name for name, obj in present.items() if not selector.matches(labels_of(obj))}
    tenant_namespaces = sorted({ns for ns, _ in origin})
    assumed = [ns for ns in tenant_namespaces if ns not in present]
    compiled_objects = [
        o
        for o in objects
        if not (o.get("kind") == "Namespace" and str(meta(o).get("name")) in unselected)
    ]
    compiled_objects += [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
        }
        for ns in assumed
    ]
    snapshot = compile_snapshot(compiled_objects, evolve(options, namespace_selector=MATCH_ALL))

    for namespace, status in sorted(snapshot.statuses.items()):
        tenant = TenantReport(
            namespace=namespace,
            config_map=status.config_map,
            file=origin.get((namespace, status.config_map or "")),
            state=status.state,
            serving=status.serving,
            hosts=status.hosts,
            namespace_assumed=namespace in assumed,
        )
        if tenant.namespace_assumed:
            assumption = Problem(
                "",
                f"Namespace {namespace!r} is not among the files: checked as if it existed"
                " with no labels and no annotations (no extra hosts allowed, no quota"
                " ceilings, selected by any --namespace-selector)",
            )
            (tenant.errors if strict else tenant.warnings).append(assumption)
        _classify(tenant, status.state, status.messages, snapshot, strict)
        tenant.backends = _backend_protocols(snapshot, namespace)
        if strict:
            tenant.errors.extend(_backends_without_endpoints(snapshot, namespace, tenant))
        report.tenants.append(tenant)
    for object_status in snapshot.object_statuses:
        report.objects.append(_object_report(object_status))
    for _, ingress in sorted(ingress_reports(compiled_objects, snapshot, options.ingress).items()):
        report.ingresses.append(ingress)
    for namespace in sorted(unselected):
        for (ns, name), path in sorted(origin.items()):
            if ns != namespace:
                continue
            problem = Problem(
                "",
                f"Namespace {namespace!r} does not match the --namespace-selector: the"
                " gateway does not serve this Tenant ConfigMap",
            )
            report.tenants.append(
                TenantReport(
                    namespace=namespace,
                    config_map=name,
                    file=path,
                    state=STATE_NOT_SELECTED,
                    serving=False,
                    errors=[problem] if strict else [],
                    warnings=[] if strict else [problem],
                )
            )
    return report


def _object_report(status: ObjectStatus) -> ObjectReport:
    return ObjectReport(
        status.key.kind,
        status.key.namespace,
        status.key.name,
        status.summary(with_message=True),
        status_json(status),
    )


def _classify(
    tenant: TenantReport,
    state: str,
    messages: Sequence[str],
    snapshot: Snapshot,
    strict: bool,
) -> None:
    """
    Sort a status's messages into errors and warnings.  A Rejected tenant's
    messages are its reasons, but for the few that are only advice; an
    accepted one's are warnings, but for references that exist and are wrong
    (a port the Service lacks, a certificate that does not serve) and, in
    strict mode, references that do not exist at all.
    """
    # The hosts as the serving spec declares them, to name hosts[i].
    serving = snapshot.last_good.get(tenant.namespace)
    hosts: tuple[str, ...] = serving[1].hosts if serving is not None else ()
    for message in messages:
        problem = split_message(message)
        lost = _LOST_HOST.match(message)
        if lost is not None and lost.group("host") in hosts:
            problem = Problem(f"hosts[{hosts.index(lost.group('host'))}]", message)
        if message.startswith("ConfigMap ") and " ignored: " in message:
            error = True  # the contract: the other Tenant ConfigMaps get an error status
        elif any(
            pattern.search(problem.path + " " + problem.message) for pattern in _SERVES_ANYWAY
        ):
            error = False
        elif state == STATE_REJECTED:
            error = not message.startswith("serving the last good config")
        elif lost is not None:
            error = state == STATE_HOST_CONFLICT
        elif _MISSING_REFERENCE.match(problem.message):
            error = strict
        else:
            # A Service without the named port, a Secret without its key or
            # with entries that are not bcrypt, a certificate that does not
            # load, has expired or does not cover the hosts: all present in
            # the files and wrong.
            error = True
        (tenant.errors if error else tenant.warnings).append(problem)


def _backend_protocols(snapshot: Snapshot, namespace: str) -> list[BackendReport]:
    compiled = snapshot.tenants.get(namespace)
    if compiled is None:
        return []
    found = []
    for route in compiled.routes:
        for index, backend in enumerate(route.backends):
            if backend.port == 0:
                continue  # not resolved: reported as an error or warning
            found.append(
                BackendReport(
                    f"{route.source}.backends[{index}]",
                    backend.service,
                    backend.port,
                    backend.protocol,
                )
            )
    return found


def _backends_without_endpoints(
    snapshot: Snapshot, namespace: str, tenant: TenantReport
) -> list[Problem]:
    compiled = snapshot.tenants.get(namespace)
    if compiled is None:
        return []
    reported = {p.path for p in tenant.errors + tenant.warnings}
    problems = []
    for route in compiled.routes:
        for index, backend in enumerate(route.backends):
            path = f"{route.source}.backends[{index}]"
            if backend.weight == 0 or backend.endpoints:
                continue
            if f"{path}.service" in reported or f"{path}.port" in reported:
                continue
            problems.append(
                Problem(
                    f"{path}.service",
                    f"Service {backend.service!r} has no ready endpoints in the files"
                    " (no EndpointSlice lists one): it receives no traffic",
                )
            )
    return sorted(problems, key=lambda p: p.path)


def report_text(report: Report, out: TextIO) -> None:
    for file_report in report.files:
        for error in file_report.errors:
            print(f"{file_report.file}: error: {error}", file=out)
        if file_report.kind == "tenant.yaml" and not file_report.errors:
            print(f"{file_report.file}: valid tenant.yaml", file=out)
    for tenant in report.tenants:
        where = (
            f"{tenant.namespace}/{tenant.config_map}"
            if tenant.config_map
            else f"{tenant.namespace} (Gateway API)"
        )
        origin = f" ({tenant.file})" if tenant.file else ""
        print(f"{where}: {tenant.state}{origin}", file=out)
        for error in tenant.errors:
            print(f"{where}: error: {error}", file=out)
        for warning in tenant.warnings:
            print(f"{where}: warning: {warning}", file=out)
        for backend in tenant.backends:
            print(f"{where}: backend: {backend}", file=out)
    for obj in report.objects:
        name = f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name
        print(f"{obj.kind} {name}: {obj.summary}", file=out)
    for ingress in report.ingresses:
        print(f"Ingress {ingress.namespace}/{ingress.name}: {ingress.state}", file=out)
        for message in ingress.messages:
            print(f"Ingress {ingress.namespace}/{ingress.name}: {message}", file=out)
    errors = sum(len(f.errors) for f in report.files) + sum(len(t.errors) for t in report.tenants)
    warnings = sum(len(t.warnings) for t in report.tenants)
    print(
        f"checked {len(report.files)} file(s), {len(report.tenants)} tenant(s):"
        f" {errors} error(s), {warnings} warning(s)" + (" [strict]" if report.strict else ""),
        file=out,
    )


def report_json(report: Report) -> dict[str, Any]:
    """
    C{{"ok", "strict", "summary": {files, tenants, errors, warnings},
    "files": [{file, kind, errors}], "tenants": [{namespace, configMap, file,
    state, serving, hosts, namespaceAssumed, errors, warnings, backends}]}};
    every error and warning is C{{"path", "message"}}, C{path} being the
    field path in tenant.yaml (C{""} when the problem is not one field's);
    every backend is C{{"path", "service", "port", "protocol"}}, the
    protocol being C{"h1"}, C{"h2c"} or C{"tls"}.
    C{"gatewayApi": [{kind, namespace, name, status}]} holds the Gateway API
    objects' statuses, shaped as their status subresource;
    C{"ingresses": [{namespace, name, state, serving, hosts, messages}]} each
    Ingress of our class.
    """
    return {
        "ok": report.ok,
        "strict": report.strict,
        "summary": {
            "files": len(report.files),
            "tenants": len(report.tenants),
            "errors": sum(len(f.errors) for f in report.files)
            + sum(len(t.errors) for t in report.tenants),
            "warnings": sum(len(t.warnings) for t in report.tenants),
        },
        "files": [
            {"file": f.file, "kind": f.kind, "errors": [e.json() for e in f.errors]}
            for f in report.files
        ],
        "tenants": [
            {
                "namespace": t.namespace,
                "configMap": t.config_map,
                "file": t.file,
                "state": t.state,
                "serving": t.serving,
                "hosts": list(t.hosts),
                "namespaceAssumed": t.namespace_assumed,
                "errors": [e.json() for e in t.errors],
                "warnings": [w.json() for w in t.warnings],
                "backends": [b.json() for b in t.backends],
            }
            for t in report.tenants
        ],
        # Gateway API objects' statuses (GatewayClass, Gateway, HTTPRoute), in
        # the shape of their status subresource.
        "gatewayApi": [
            {"kind": o.kind, "namespace": o.namespace, "name": o.name, "status": o.status}
            for o in report.objects
        ],
        "ingresses": [
            {
                "namespace": i.namespace,
                "name": i.name,
                "state": i.state,
                "serving": i.served,
                "hosts": list(i.hosts),
                "messages": list(i.messages),
            }
            for i in report.ingresses
        ],
    }


def check(
    paths: Sequence[str],
    options: CompileOptions,
    out: TextIO,
    *,
    strict: bool = False,
    output: str = "text",
    default_namespace: str | None = None,
) -> int:
    """Prints every problem found and returns the process exit status."""
    report = check_report(paths, options, strict=strict, default_namespace=default_namespace)
    if output == "json":
        json.dump(report_json(report), out, indent=2)
        out.write("\n")
    else:
        report_text(report, out)
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tenantgw",
        description="tenantgw tools. 'tenantgw check FILE...' validates tenant configuration;"
        " 'tenantgw migrate FILE...' shows what Ingresses would become."
        " The gateway itself runs as 'twistd tenantgw'.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser(
        "check",
        help="validate Tenant ConfigMaps, Namespaces and bare tenant.yaml files offline",
        description="Validate tenant configuration as the gateway would. Exit status: 0 no"
        " errors (warnings allowed), 1 errors found, 2 usage error.",
    )
    checker.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    checker.add_argument("--base-domain", default=None)
    checker.add_argument("--namespace-selector", default="")
    checker.add_argument(
        "--namespace",
        default=None,
        metavar="NS",
        help="namespace of objects that name none, as 'kubectl apply -n NS' (default: default)",
    )
    checker.add_argument(
        "--strict",
        action="store_true",
        help="the files are the whole world: a missing Namespace, Service or Secret, a"
        " Service without ready endpoints, an unselected namespace are errors",
    )
    checker.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text (default) or json: one document with every tenant's state, errors and"
        " warnings (each with its field path)",
    )
    migrator = commands.add_parser(
        "migrate",
        help="show what Ingresses and their ingress-nginx annotations become",
        description="For each Ingress: every annotation served, refused or unknown, and why."
        " Exit status: 0 every Ingress would be served, 1 some would be refused, 2 usage"
        " error.",
    )
    migrator.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    migrator.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        from tenantgw.app.migrate import migrate

        return migrate(args.paths, sys.stdout, args.output)
    try:
        selector = LabelSelector.parse(args.namespace_selector)
    except SelectorError as e:
        parser.error(f"--namespace-selector: {e}")
    options = CompileOptions(base_domain=args.base_domain, namespace_selector=selector)
    return check(
        args.paths,
        options,
        sys.stdout,
        strict=args.strict,
        output=args.output,
        default_namespace=args.namespace,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
