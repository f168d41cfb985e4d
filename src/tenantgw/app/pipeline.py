"""
Sources -> compile -> data plane: the glue that applies each new snapshot.

Status changes are logged here, once per change, so an operator reading the
gateway's log sees a tenant go from Accepted to Rejected and why, without a
line per poll.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.logger import Logger

from tenantgw.admin.resource import Readiness
from tenantgw.compile.compiler import CompileOptions
from tenantgw.compile.incremental import Changes, IncrementalCompiler
from tenantgw.dataplane.gateway import Gateway
from tenantgw.plans.snapshot import STATE_ACCEPTED, Snapshot, TenantStatus, changed_namespaces

_log = Logger()


class ConfigPipeline:
    def __init__(self, gateway: Gateway, options: CompileOptions, readiness: Readiness) -> None:
        self.gateway = gateway
        self.options = options
        self.readiness = readiness
        self.rebuilds = 0
        # Recompiles only the tenants a change reaches; counts full and
        # incremental compiles for the metrics.
        self.compiler = IncrementalCompiler(options)
        # Told of every applied snapshot (Kubernetes Events, for one).
        self.listeners: list[Callable[[Snapshot], object]] = []

    def objects_changed(self, objects: list[Mapping[str, Any]]) -> None:
        """Every object the source holds (the directory source, a first list)."""
        self._applied(self.compiler.replace(objects))

    def objects_delta(self, changes: Changes) -> None:
        """Only the objects that changed (the Kubernetes source), None for one deleted."""
        self._applied(self.compiler.apply(changes))

    def _applied(self, snapshot: Snapshot) -> None:
        previous = self.gateway.snapshot
        self.gateway.apply(snapshot)
        self.rebuilds += 1
        self.readiness.synced = True
        self._log_changes(previous, snapshot)
        for listener in self.listeners:
            try:
                listener(snapshot)
            except Exception:
                _log.failure("a snapshot listener failed")

    def _log_changes(self, previous: Snapshot, current: Snapshot) -> None:
        before = previous.statuses
        after = current.statuses
        visit = changed_namespaces(current, previous)
        if visit is None:
            # Identity first: an incremental compile keeps every untouched
            # tenant's status object, and comparing 5,000 by value costs
            # more than the compile of the one that changed.
            changed = [
                (namespace, status)
                for namespace, status in after.items()
                if before.get(namespace) is not status and before.get(namespace) != status
            ]
            removed = sorted(before.keys() - after.keys())
        else:
            changed = []
            removed = []
            for namespace in visit:
                status = after.get(namespace)
                if status is None:
                    if namespace in before:
                        removed.append(namespace)
                elif before.get(namespace) != status:
                    changed.append((namespace, status))
            removed.sort()
        for _, status in sorted(changed):
            _report(status)
        problem = current.default_certificate_problem
        if problem is not None and problem != previous.default_certificate_problem:
            _log.warn(
                "--default-cert-secret unusable, the listener default serves: {problem}",
                problem=problem,
            )
        for namespace in removed:
            _log.info("tenant {namespace}: removed", namespace=namespace)


def _report(status: TenantStatus) -> None:
    text = "; ".join(status.messages)
    if status.state == STATE_ACCEPTED and not status.messages:
        _log.info(
            "tenant {namespace}: Accepted, hosts {hosts}",
            namespace=status.namespace,
            hosts=", ".join(status.hosts) or "(none)",
        )
    else:
        _log.warn(
            "tenant {namespace}: {state} ({serving}): {text}",
            namespace=status.namespace,
            state=status.state,
            serving="serving" if status.serving else "not serving",
            text=text,
        )
