"""
Builds the running gateway for ``twistd tenantgw``.

The twistd dropin names this module lazily, so nothing here (least of all
the reactor) is imported until twistd actually starts tenantgw.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from tenantgw.admin.resource import Readiness, admin_root
from tenantgw.app.options import TLS_VERSIONS, Options
from tenantgw.app.pipeline import ConfigPipeline
from tenantgw.compile.compiler import CompileOptions
from tenantgw.dataplane.gateway import GatewaySite, MultiplexingGatewaySite, gateway_on
from tenantgw.dataplane.upstream import UpstreamPool
from tenantgw.sources.directory import DirectorySource
from tenantgw.tls.sni import SNIContexts

__all__ = ["Options", "build", "makeService"]

_log = Logger()


class _PoolService(Service):
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> Any:
        self.pool.stop()
        return super().stopService()


class _StartupWarnings(Service):
    def __init__(self, options: Options) -> None:
        self.options = options

    def startService(self) -> None:
        super().startService()
        for name, feature in self.options.not_yet_effective():
            _log.warn(
                "--{name} is set but has no effect yet: {feature} is not built in this release",
                name=name,
                feature=feature,
            )
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
        )
        self.pool = self.gateway.pool
        self.site = GatewaySite(self.gateway, reactor, header_deadline=options["header-timeout"])
        self.tls_site = MultiplexingGatewaySite(
            self.gateway, reactor, header_deadline=options["header-timeout"]
        )
        self.pipeline = ConfigPipeline(
            self.gateway,
            CompileOptions(
                base_domain=options["base-domain"],
                namespace_selector=options["selector"],
                default_certificate_secret=options["default_certificate_secret"],
            ),
            self.readiness,
        )
        self.source = DirectorySource(
            options["source_dir"],
            reactor,
            self.pipeline.objects_changed,
            interval=options["poll-interval"],
        )
        self.admin_site = Site(
            admin_root(self.readiness, lambda: self.gateway.snapshot), reactor=reactor
        )
        self.admin_site.log = lambda request: None  # type: ignore[method-assign]

        _StartupWarnings(options).setServiceParent(self)
        _PoolService(self.pool).setServiceParent(self)
        self.source.setServiceParent(self)
        _listener(reactor, options["admin"], self.admin_site).setServiceParent(self)
        _listener(reactor, options["http"], self.site).setServiceParent(self)
        self.sni = SNIContexts(
            lambda: self.gateway.snapshot,
            options["default_certificate"],
            TLS_VERSIONS[options["tls-min-version"]],
        )
        self.gateway.https_redirect_port = options["https-redirect-port"]
        _listener(
            reactor, options["https"], TLSMemoryBIOFactory(self.sni.options, False, self.tls_site)
        ).setServiceParent(self)


def _listener(reactor: Any, description: str, factory: Any) -> StreamServerEndpointService:
    """
    A listener that makes twistd exit when it cannot bind, as C{twistd web}
    does: a gateway running without its port would pass a liveness probe
    while serving nothing.
    """
    service = StreamServerEndpointService(serverFromString(reactor, description), factory)
    service._raiseSynchronously = True
    return service


def build(options: Options, reactor: Any) -> GatewayServices:
    return GatewayServices(options, reactor)


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    return build(options, reactor)
