"""
Builds the running gateway for ``twistd tenantgw``.

The twistd dropin names this module lazily, so nothing here (least of all
the reactor) is imported until twistd actually starts tenantgw.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from tenantgw.admin.access_log import AccessLog, open_destination
from tenantgw.admin.metrics import Metrics
from tenantgw.admin.resource import Readiness, admin_root
from tenantgw.app.drain import DrainService
from tenantgw.app.options import TLS_VERSIONS, Options
from tenantgw.app.pipeline import ConfigPipeline
from tenantgw.app.workers import AdoptedListener, WorkerSupervisor, worker_arguments
from tenantgw.compile.compiler import CompileOptions
from tenantgw.dataplane.access import TrustedProxyProtocolFactory
from tenantgw.dataplane.gateway import (
    Gateway,
    MultiplexingGatewaySite,
    PlainGatewaySite,
    gateway_on,
)
from tenantgw.dataplane.quota_redis import RedisQuota
from tenantgw.sources.directory import DirectorySource
from tenantgw.sources.kubernetes import KubernetesSource, api_client_from
from tenantgw.status.events import StatusEvents, kubernetes_poster
from tenantgw.status.ingress_report import IngressReport, ingress_reports
from tenantgw.status.leader import KubernetesLeaseAPI, LeaderElector, LeaderGauge
from tenantgw.status.reconciler import StatusReconciler
from tenantgw.status.writer import KubernetesStatusAPI, StatusWriter
from tenantgw.tls.sni import SNIContexts

__all__ = ["Options", "build", "makeService"]

# What the statuses and their Events are worked out from (status/), beside the snapshot.
_STATUS_KINDS = frozenset(
    {"Ingress", "IngressClass", "GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute"}
)

_log = Logger()


class _PoolService(Service):
    """Starts the upstream pool's sweeper; on stop, ends it and the health probes."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def startService(self) -> None:
        super().startService()
        self.gateway.pool.start()

    def stopService(self) -> Any:
        self.gateway.stop()
        return super().stopService()


class _SharedQuotaService(Service):
    """Closes the Redis connections on shutdown, so none is left reconnecting."""

    def __init__(self, quota: RedisQuota) -> None:
        self.quota = quota

    def stopService(self) -> Any:
        super().stopService()
        return self.quota.stop()


class _StartupWarnings(Service):
    def __init__(self, options: Options) -> None:
        self.options = options

    def startService(self) -> None:
        super().startService()
        if self.options["default-cert"] is None:
            _log.warn(
                "no --default-cert: HTTPS handshakes that name no tenant's host get a"
                " self-signed certificate that clients will not trust"
            )


class GatewayServices(MultiService):
    """The whole gateway, with its parts reachable for tests and the admin API."""

    def __init__(self, options: Options, reactor: Any) -> None:
        super().__init__()
        self.readiness = Readiness()
        self.gateway = gateway_on(
            reactor,
            trusted_proxies=options["trusted"],
            upstream_timeout=options["upstream-timeout"],
            upstream_trust=options["upstream_trust"],
            redis_url=options["redis"],
            redis_fail_open=options["redis-failure"] == "open",
            replicas=options["replicas"],
        )
        self.pool = self.gateway.pool
        self.pool.max_pending_connects = options["max-pending-connects"]
        self.gateway.path_policy = options["path_policy"]
        self.gateway.body_timeout = options["body-timeout"]
        header_deadline = options["header-timeout"]
        underscores = options["headers-with-underscores"]
        front = options["http1-front"]
        # Plain HTTP: HTTP/1.1, and h2c for clients with prior knowledge.
        self.site = PlainGatewaySite(
            self.gateway,
            reactor,
            header_deadline=header_deadline,
            underscores=underscores,
            http1_front=front,
        )
        self.tls_site = MultiplexingGatewaySite(
            self.gateway,
            reactor,
            header_deadline=header_deadline,
            underscores=underscores,
            http1_front=front,
        )
        self.pipeline = ConfigPipeline(
            self.gateway,
            CompileOptions(
                base_domain=options["base-domain"],
                namespace_selector=options["selector"],
                default_certificate_secret=options["default_certificate_secret"],
                gateway_api=options["gateway_api"],
                ingress=options["ingress"],
            ),
            self.readiness,
        )
        self.source: DirectorySource | KubernetesSource
        self.elector: LeaderElector | None = None
        self.status_writer: StatusWriter | None = None
        self.reconciler: StatusReconciler | None = None
        self._ingress_options = options["ingress"]
        self.ingress_reports: dict[tuple[str, str], IngressReport] = {}
        if options["source"] == "kubernetes":
            try:
                api_client = api_client_from(options["kubeconfig"], options["context"])
            except Exception as e:  # ConfigException, OSError, YAML errors: all fatal
                raise SystemExit(
                    f"tenantgw: --source kubernetes: no usable cluster config: {e}"
                ) from None
            default_secret = options["default_certificate_secret"]
            self.source = KubernetesSource(
                api_client,
                reactor,
                self._objects_changed,
                namespace_selector=options["namespace-selector"],
                extra_secrets=[default_secret] if default_secret else (),
                on_changes=self._objects_delta,
            )
            self.readiness.kind_states = self.source.kind_states
            # Only the Lease's holder posts (contract section 13).
            self.events = StatusEvents(kubernetes_poster(api_client), reactor, active=False)
            self.events.setServiceParent(self)
            self.pipeline.listeners.append(self.events.snapshot_applied)
            self.elector = LeaderElector(
                KubernetesLeaseAPI(api_client),
                reactor,
                options["leader-election-namespace"],
                options["leader-election-name"],
            )
            self.elector.on_started_leading.append(self.events.start_posting)
            self.elector.on_stopped_leading.append(self.events.stop_posting)
            # Statuses through the status subresources, by the leader too.
            self.status_writer = StatusWriter(KubernetesStatusAPI(api_client), reactor)
            self.status_writer.setServiceParent(self)
            services = self.source.store.objects
            self.reconciler = StatusReconciler(
                self.status_writer,
                self.events,
                reactor,
                options["ingress"],
                options["publish"],
                lambda namespace, name: services.get("Service", {}).get((namespace, name)),
                gateways=options["gateway_api"].gateways,
            )
            self.reconciler.setServiceParent(self)
            self.elector.on_started_leading.append(self.status_writer.start_writing)
            self.elector.on_stopped_leading.append(self.status_writer.stop_writing)
            self.elector.setServiceParent(self)
        else:
            self.source = DirectorySource(
                options["source_dir"],
                reactor,
                self._objects_changed,
                interval=options["poll-interval"],
            )
        self.metrics = Metrics()
        self.metrics.watch_snapshot(lambda: self.gateway.snapshot)
        self.metrics.count_in_flight(lambda: self.gateway.requests_open)
        self.gateway.metrics = self.metrics
        self.metrics.tenant_in_flight = self.gateway.in_flight.current
        self.metrics.ejected_endpoints = lambda: self.gateway.health.unavailable
        if isinstance(self.source, DirectorySource):
            self.metrics.source_problems = self.source.problems
        self.pipeline.listeners.append(self.metrics.snapshot_applied)
        self.pipeline.listeners.append(HeapSettler())
        compiler = self.pipeline.compiler
        self.metrics.count_by(
            "tenantgw_config_compiles",
            "Snapshot compiles, by mode: incremental (only the tenants a change reaches)"
            " or full (every tenant)",
            "mode",
            lambda: {"full": 0, "incremental": 0, **compiler.compiles},
        )
        self.metrics.count_by(
            "tenantgw_config_full_compiles",
            "Full compiles, by the reason the change could not be compiled incrementally",
            "reason",
            lambda: compiler.full_reasons,
        )
        self.metrics.count_from(
            "tenantgw_config_tenants_compiled",
            "Tenants compiled, over every compile: how much work the changes cost",
            lambda: compiler.tenants_compiled,
        )
        _count_elsewhere(self.metrics, self.gateway, self.source)
        if self.status_writer is not None:
            writer = self.status_writer
            self.metrics.count_from(
                "tenantgw_status_writes",
                "Object statuses written through the status subresource (leader only)",
                lambda: writer.writes,
            )
            self.metrics.count_from(
                "tenantgw_status_conflicts",
                "Status writes answered 409 Conflict, retried from a fresh read",
                lambda: writer.conflicts,
            )
            self.metrics.count_from(
                "tenantgw_status_write_failures",
                "Status writes given up (API errors, or conflicts after every retry)",
                lambda: writer.failures,
            )
        if self.elector is not None:
            elector = self.elector
            self.metrics.registry.register(
                LeaderGauge(
                    "tenantgw_leader",
                    "1 on the replica holding the leader-election Lease (the status writer)",
                    lambda: elector.is_leader,
                )
            )
        # Factory a listening port was given -> the listener's name, for metrics.
        self._listener_names: dict[int, str] = {}
        self.metrics.count_connections(lambda: _open_connections(reactor, self._listener_names))
        self.access_log: AccessLog | None = None
        destination = open_destination(options["access-log"])
        if destination is not None:
            self.access_log = self.gateway.access_log = AccessLog(destination, reactor)
        self.admin_site = Site(
            admin_root(
                self.readiness,
                lambda: self.gateway.snapshot,
                self.metrics,
                self.metrics,
                ingresses=self.ingress_documents,
            ),
            reactor=reactor,
        )
        self.admin_site.log = lambda request: None  # type: ignore[method-assign]
        self.drain = DrainService(
            self.readiness,
            lambda: self.gateway.requests_open,
            reactor,
            options["drain-timeout"],
            drained=self._drained,
            began=self.gateway.start_draining,
        )

        _StartupWarnings(options).setServiceParent(self)
        _PoolService(self.gateway).setServiceParent(self)
        if self.gateway.shared_quota is not None:
            _SharedQuotaService(self.gateway.shared_quota).setServiceParent(self)
        self.source.setServiceParent(self)
        self.drain.setServiceParent(self)
        inherited = options["inherited"]
        _listener(
            reactor, options["admin"], self.admin_site, inherited.get("admin")
        ).setServiceParent(self.drain)
        http_factory = _proxied(options, self.site)
        self._listener_names[id(http_factory)] = "http"
        _listener(reactor, options["http"], http_factory, inherited.get("http")).setServiceParent(
            self
        )
        self.sni = SNIContexts(
            lambda: self.gateway.snapshot,
            options["default_certificate"],
            TLS_VERSIONS[options["tls-min-version"]],
            self.metrics.tls_selected,
            self.metrics.tls_handshake,
        )
        self.gateway.https_redirect_port = options["https-redirect-port"]
        https_factory = _proxied(
            options, TLSMemoryBIOFactory(self.sni.options, False, self.tls_site)
        )
        self._listener_names[id(https_factory)] = "https"
        _listener(
            reactor, options["https"], https_factory, inherited.get("https")
        ).setServiceParent(self)

    def _objects_changed(self, objects: list[Any]) -> None:
        """A rebuild of everything: the snapshot first, then the statuses it implies."""
        self.pipeline.objects_changed(objects)
        self._statuses([o for o in objects if o.get("kind") in _STATUS_KINDS])

    def _objects_delta(self, changes: Any) -> None:
        """
        A rebuild of what changed: the snapshot, then the statuses, worked
        out from the only kinds they read (held by the source; none at all
        in a cluster of Tenant ConfigMaps only), not the whole cluster.
        """
        self.pipeline.objects_delta(changes)
        held = getattr(self.source, "store", None)
        if held is None:
            return
        self._statuses(
            [obj for kind in _STATUS_KINDS for obj in held.objects.get(kind, {}).values()]
        )

    def _statuses(self, objects: list[Any]) -> None:
        snapshot = self.gateway.snapshot
        try:
            reports = ingress_reports(objects, snapshot, self._ingress_options)
        except Exception:
            _log.failure("working out the Ingresses' statuses failed")
            return
        self.ingress_reports = reports
        if self.reconciler is not None:
            try:
                self.reconciler.applied(objects, snapshot, reports)
            except Exception:
                _log.failure("working out the objects' statuses failed")

    def ingress_documents(self) -> list[dict[str, Any]]:
        """Each served Ingress's state, for /api/tenants and the dashboard."""
        return [
            {
                "namespace": r.namespace,
                "name": r.name,
                "state": r.state,
                "serving": r.served,
                "hosts": list(r.hosts),
                "messages": list(r.messages),
            }
            for _, r in sorted(self.ingress_reports.items())
        ]

    def startService(self) -> None:
        super().startService()
        if self.access_log is not None:
            self.access_log.start()

    def _drained(self) -> None:
        if self.access_log is not None:
            self.access_log.stop()


class HeapSettler:
    """
    A pipeline listener that, once the first snapshot serves, moves every
    object alive then (modules, the first snapshot, its serving tree) out of
    the cyclic collector's sight (C{gc.freeze}).

    The collector's full passes walk every tracked object: at 5,000 tenants
    that heap is hundreds of megabytes, and each pass stalled requests for
    tens of milliseconds; what changes later is small.  Frozen objects are
    still freed by reference counting when replaced (snapshots and serving
    handlers hold no reference cycles, tests/test_garbage.py); only a cycle
    among them would stay, and there is none to stay.
    """

    def __init__(self, collector: Any = gc) -> None:
        self.collector = collector
        self.settled = False

    def __call__(self, snapshot: Any) -> None:
        if self.settled:
            return
        self.settled = True
        self.collector.collect()
        self.collector.freeze()


def _proxied(options: Options, factory: Any) -> Any:
    """With --proxy-protocol, clients' addresses come from trusted proxies' PROXY headers."""
    if not options["proxy-protocol"]:
        return factory
    return TrustedProxyProtocolFactory(factory, options["trusted"])


def _count_elsewhere(metrics: Metrics, gateway: Gateway, source: Any) -> None:
    """Counters that the Redis quota client and the Kubernetes watches keep themselves."""
    metrics.count_from(
        "tenantgw_quota_redis_fail_open",
        "Requests admitted by the in-process fallback because Redis could not answer",
        lambda: getattr(gateway.shared_quota, "fallback_admitted", 0),
    )
    metrics.count_from(
        "tenantgw_quota_redis_failures",
        "Quota decisions Redis could not make (errors, timeouts)",
        lambda: getattr(gateway.shared_quota, "failures", 0),
    )
    metrics.quota_replicas = lambda: getattr(gateway.shared_quota, "replicas", 1)
    kind_states = getattr(source, "kind_states", None)
    if kind_states is not None:

        def kinds_in(state: str) -> Callable[[], dict[str, float]]:
            return lambda: {k: float(s == state) for k, s in kind_states().items()}

        metrics.gauge_from(
            "tenantgw_source_synced",
            "1 per Kubernetes kind whose list is in and whose watch runs",
            "kind",
            kinds_in("synced"),
        )
        metrics.gauge_from(
            "tenantgw_source_forbidden",
            "1 per Kubernetes kind the RBAC forbids (served as none, retried every 60 s)",
            "kind",
            kinds_in("forbidden"),
        )
    watchers = getattr(source, "watchers", {})
    metrics.count_from(
        "tenantgw_source_watch_reconnects",
        "Kubernetes watches re-opened after the first",
        lambda: sum(max(0, getattr(w, "watches", 0) - 1) for w in watchers.values()),
    )


def _open_connections(reactor: Any, names: dict[int, str]) -> dict[str, int]:
    """
    Client connections per listener, found among the reactor's sockets at
    scrape time: counting them as they open and close would cost every
    connection something, for a figure read every few seconds.
    """
    counts = dict.fromkeys(names.values(), 0)
    selectables = set(reactor.getReaders()) | set(reactor.getWriters())
    for selectable in selectables:
        port = getattr(selectable, "server", None)  # an accepted connection's port
        name = names.get(id(getattr(port, "factory", None)))
        if name is not None:
            counts[name] += 1
    return counts


def _listener(
    reactor: Any, description: str, factory: Any, inherited: int | None = None
) -> Service:
    """
    A listener that makes twistd exit when it cannot bind, as C{twistd web}
    does: a gateway running without its port would pass a liveness probe
    while serving nothing.  A --workers worker adopts the C{inherited}
    socket its supervisor bound instead.
    """
    if inherited is not None:
        return AdoptedListener(reactor, inherited, factory)
    service = StreamServerEndpointService(serverFromString(reactor, description), factory)
    service._raiseSynchronously = True
    return service


def build(options: Options, reactor: Any) -> GatewayServices:
    return GatewayServices(options, reactor)


def build_supervisor(options: Options, reactor: Any, argv: list[str]) -> WorkerSupervisor:
    """The --workers N parent: binds the listeners, runs N gateways, serves nothing itself."""
    return WorkerSupervisor(
        reactor,
        options["workers"],
        {name: options[name] for name in ("http", "https", "admin")},
        worker_arguments(argv),
    )


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    if options["workers"] > 1 and not options["inherited"]:
        return build_supervisor(options, reactor, sys.argv)
    return build(options, reactor)
