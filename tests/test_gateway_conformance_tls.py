"""
Ports of the upstream conformance tests about HTTPS listeners: requests over
real TLS (SNI, the certificate verified against the test CA, the Host
header) to the gateway's HTTPS socket, and the listener statuses for bad or
ungranted certificateRefs.  Manifests of our own, written from the upstream
tests (see docs/gateway-api-conformance.md for the commits read).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web._newclient import ResponseNeverReceived

from tenantgw.compile.compiler import CompileOptions
from tests.gateway_conformance_support import (
    APP,
    INFRA,
    WEB,
    ConformanceCase,
    backend,
    gateway,
    http_route,
    https_listener,
    listener,
    tls_secret,
)
from tests.tls_support import TestCA

GW = "gateway.networking.k8s.io"


def grant(
    name: str,
    namespace: str = WEB,
    from_group: str = GW,
    from_kind: str = "Gateway",
    from_namespace: str = INFRA,
    to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "from": [{"group": from_group, "kind": from_kind, "namespace": from_namespace}],
            "to": [
                to if to is not None else {"group": "", "kind": "Secret", "name": "certificate"}
            ],
        },
    }


class ListenerStatusCase(ConformanceCase):
    def listeners(self, name: str) -> dict[str, Any]:
        """Listener name -> (conditions by type, attached routes, supported kinds)."""
        status = next(
            s
            for s in self.snapshot.object_statuses
            if (s.key.kind, s.key.namespace, s.key.name) == ("Gateway", INFRA, name)
        )
        return {
            lst.name: (
                {c.type: (c.status, c.reason) for c in lst.conditions},
                lst.attached_routes,
                lst.supported_kinds,
            )
            for lst in status.listeners
        }

    def assertListener(
        self,
        gateway_name: str,
        listener_name: str,
        resolved: tuple[str, str],
        programmed: str,
        attached: int = 0,
    ) -> None:
        conditions, attached_routes, kinds = self.listeners(gateway_name)[listener_name]
        case = f"{gateway_name}/{listener_name}"
        if resolved[1]:
            self.assertEqual(conditions["ResolvedRefs"], resolved, case)
        else:  # the upstream test accepts any reason
            self.assertEqual(conditions["ResolvedRefs"][0], resolved[0], case)
        self.assertEqual(conditions["Programmed"][0], programmed, case)
        if programmed == "True":
            self.assertEqual(conditions["Programmed"][1], "Programmed", case)
        self.assertEqual(attached_routes, attached, case)
        # As upstream's listenersMatch: the expected kinds are present (an
        # implementation may support more: GRPCRoute here).
        self.assertIn("HTTPRoute", kinds, case)


class HTTPSListenerConformance(ListenerStatusCase):
    """
    HTTPRouteHTTPSListener: the base Gateway same-namespace-with-https-listener
    (listener "https" without a hostname, "https-with-hostname" for
    second-example.org, both with the Secret tls-validity-checks-certificate)
    and two routes: example.org on both listeners, and one without hostnames
    on https-with-hostname only.
    """

    def setUp(self) -> None:
        super().setUp()
        self.ca = TestCA()
        # Upstream makes this certificate for "*" (and "*.org"); a client
        # verifying the name needs it to cover the names asked by SNI.
        self.certificate = self.ca.issue("example.org", "second-example.org", "unknown-example.org")

    def objects(self) -> list[dict[str, Any]]:
        secret = "tls-validity-checks-certificate"
        return [
            gateway(
                "same-namespace-with-https-listener",
                https_listener("https", secret),
                https_listener("https-with-hostname", secret, "second-example.org"),
            ),
            tls_secret(INFRA, secret, self.certificate),
            http_route(
                "httproute-https-test",
                [{"backendRefs": [backend("infra-backend-v1")]}],
                gateway_name="same-namespace-with-https-listener",
                hostnames=["example.org"],
            ),
            http_route(
                "httproute-https-test-no-hostname",
                [{"backendRefs": [backend("infra-backend-v1")]}],
                parents=[
                    {
                        "name": "same-namespace-with-https-listener",
                        "namespace": INFRA,
                        "sectionName": "https-with-hostname",
                    }
                ],
            ),
        ]

    def serve_upstream_setup(self) -> Any:
        # Known difference: the certificate of a listener without a hostname
        # is not served (docs/gateway-api.md, "A listener without a hostname
        # does not change the default certificate"); the operator's
        # --default-cert-secret naming the same Secret gives the upstream
        # setup, where that listener's certificate answers any SNI.
        options = CompileOptions(
            default_certificate_secret=(INFRA, "tls-validity-checks-certificate")
        )
        return self.serve_https(*self.objects(), options=options)

    @inlineCallbacks
    def test_HTTPRouteHTTPSListener(self) -> Any:
        _, port = self.serve_upstream_setup()
        for route in ("httproute-https-test", "httproute-https-test-no-hostname"):
            conditions = self.parent_conditions(INFRA, route)
            self.assertEqual(conditions["Accepted"], ("True", "Accepted"), route)
            self.assertEqual(conditions["ResolvedRefs"], ("True", "ResolvedRefs"), route)
        ca = self.ca
        # "Simple HTTPS request should reach infra-backend"
        yield self.expect_tls(port, ca, "example.org", "example.org", backend="infra-backend-v1")
        # "Gateway with hostname / Simple HTTPS request should reach infra-backend"
        yield self.expect_tls(
            port, ca, "second-example.org", "second-example.org", backend="infra-backend-v1"
        )
        # "Gateway with hostname / Unknown hostname should return an 404"
        yield self.expect_tls(port, ca, "unknown-example.org", "unknown-example.org", status=404)

    @inlineCallbacks
    def test_HTTPRouteHTTPSListener_unknown_sni_known_host(self) -> Any:
        """
        Known difference, upstream case "Unknown host should return an 404"
        (SNI unknown-example.org, Host second-example.org: 404 upstream,
        where SNI picks the listener and so the routes).  We pick routes by
        the Host header; SNI picks the certificate and refuses (421) a Host
        of another tenant than the SNI name's.  Here both names are the
        same namespace's, so the request is served.
        """
        _, port = self.serve_upstream_setup()
        yield self.expect_tls(
            port, self.ca, "unknown-example.org", "second-example.org", backend="infra-backend-v1"
        )

    @inlineCallbacks
    def test_hostname_less_listener_certificate_is_not_the_default(self) -> Any:
        """
        The known difference above, as served: without --default-cert-secret
        an SNI name no listener hostname covers gets the listener's own
        default certificate, which a verifying client refuses; the listener
        with a hostname serves its Secret's certificate.
        """
        _, port = self.serve_https(*self.objects())
        yield self.expect_tls(
            port, self.ca, "second-example.org", "second-example.org", backend="infra-backend-v1"
        )
        failure = yield self.assertFailure(
            self.expect_tls(port, self.ca, "example.org", "example.org"), ResponseNeverReceived
        )
        self.assertIn("DNSMismatch", str(failure.reasons[0].value))


class InvalidTLSConfigurationConformance(ListenerStatusCase):
    def test_GatewayInvalidTLSConfiguration(self) -> None:
        """
        Four Gateways, each with an HTTP listener (and a control route on it)
        and an HTTPS listener whose certificateRef is bad: a Secret that does
        not exist, a wrong group, a wrong kind, a Secret whose PEM is not
        one.  The HTTPS listener is ResolvedRefs False InvalidCertificateRef
        with no attached routes; the control routes keep serving.
        """
        objects: list[dict[str, Any]] = []
        cases = {
            "gateway-certificate-nonexistent-secret": {"name": "nonexistent-certificate"},
            "gateway-certificate-unsupported-group": {
                "group": "wrong.group.company.io",
                "name": "tls-validity-checks-certificate",
            },
            "gateway-certificate-unsupported-kind": {
                "kind": "WrongKind",
                "name": "tls-validity-checks-certificate",
            },
            "gateway-certificate-malformed-secret": {"name": "malformed-certificate"},
        }
        for name, ref in cases.items():
            https = listener(
                "https",
                protocol="HTTPS",
                port=443,
                tls={"certificateRefs": [{"group": "", "kind": "Secret", **ref}]},
            )
            objects.append(gateway(name, listener("http", same_ns=True), https))
            objects.append(
                http_route(
                    f"{name}-control",
                    [{"backendRefs": [backend("infra-backend-v1")]}],
                    parents=[{"name": name, "namespace": INFRA, "sectionName": "http"}],
                    hostnames=[f"{name.removeprefix('gateway-certificate-')}.example.com"],
                )
            )
        objects.append(
            tls_secret(INFRA, "tls-validity-checks-certificate", TestCA().issue("example.org"))
        )
        hello = "SGVsbG8gd29ybGQK"  # base64 of "Hello world", as upstream's malformed Secret
        objects.append(
            {
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": "malformed-certificate", "namespace": INFRA},
                "data": {"tls.crt": hello, "tls.key": hello},
            }
        )
        self.snapshot = self.compile(*objects)
        for name in cases:
            self.assertListener(name, "https", ("False", "InvalidCertificateRef"), "False")
            conditions = self.parent_conditions(INFRA, f"{name}-control")
            self.assertEqual(conditions["Accepted"], ("True", "Accepted"), name)


class SecretReferenceGrantConformance(ListenerStatusCase):
    def setUp(self) -> None:
        super().setUp()
        self.secret = tls_secret(WEB, "certificate", TestCA().issue("example.org"))

    def cross_namespace_gateway(self, name: str, *extra: dict[str, Any]) -> dict[str, Any]:
        https = https_listener("https", "certificate", secret_namespace=WEB, same_ns=False)
        return gateway(name, https, *extra)

    def test_GatewaySecretReferenceGrantSpecific(self) -> None:
        name = "gateway-secret-reference-grant-specific"
        self.snapshot = self.compile(
            self.cross_namespace_gateway(name), self.secret, grant("reference-grant-specific")
        )
        self.assertListener(name, "https", ("True", ""), "True")

    def test_GatewaySecretReferenceGrantAllInNamespace(self) -> None:
        name = "gateway-secret-reference-grant-all-in-namespace"
        everything = grant("reference-grant-all-in-namespace", to={"group": "", "kind": "Secret"})
        self.snapshot = self.compile(self.cross_namespace_gateway(name), self.secret, everything)
        self.assertListener(name, "https", ("True", ""), "True")

    def test_GatewaySecretMissingReferenceGrant(self) -> None:
        name = "gateway-secret-missing-reference-grant"
        missing = https_listener(
            "https-nonexistent-secret",
            "nonexistent-certificate",
            "nonexistent.example.com",
            secret_namespace=WEB,
            same_ns=False,
        )
        self.snapshot = self.compile(self.cross_namespace_gateway(name, missing), self.secret)
        for section in ("https", "https-nonexistent-secret"):
            self.assertListener(name, section, ("False", "RefNotPermitted"), "False")

    def test_GatewaySecretInvalidReferenceGrant(self) -> None:
        """Seven grants, each wrong in one field: none permits the reference."""
        name = "gateway-secret-invalid-reference-grant"
        wrong = "not-the-certificate-youre-looking-for"
        grants = [
            grant("reference-grant-wrong-namespace", namespace=APP),
            grant("reference-grant-wrong-from-group", from_group="not-the-group-youre-looking-for"),
            grant("reference-grant-wrong-from-kind", from_kind="HTTPRoute"),
            grant(
                "reference-grant-wrong-from-namespace",
                from_namespace="not-the-namespace-youre-looking-for",
            ),
            grant(
                "reference-grant-wrong-to-group",
                to={"group": "not-the-group-youre-looking-for", "kind": "Secret", "name": wrong},
            ),
            grant(
                "reference-grant-wrong-to-kind",
                to={"group": "", "kind": "Service", "name": "certificate"},
            ),
            grant(
                "reference-grant-wrong-to-name", to={"group": "", "kind": "Secret", "name": wrong}
            ),
        ]
        self.snapshot = self.compile(self.cross_namespace_gateway(name), self.secret, *grants)
        self.assertListener(name, "https", ("False", "RefNotPermitted"), "False")
