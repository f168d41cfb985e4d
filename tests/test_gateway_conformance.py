"""
Ports of the upstream Gateway API conformance tests (GATEWAY-HTTP profile):
the same scenarios and expected responses, with manifests of our own, over
real sockets against real echo backends.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from tests.gateway_conformance_support import INFRA, ConformanceCase, backend, http_route


def path(kind: str, value: str) -> dict[str, Any]:
    return {"path": {"type": kind, "value": value}}


class BasicConformance(ConformanceCase):
    @inlineCallbacks
    def test_HTTPRouteSimpleSameNamespace(self) -> Any:
        gw = self.serve(
            http_route(
                "gateway-conformance-infra-test", [{"backendRefs": [backend("infra-backend-v1")]}]
            )
        )
        self.assertEqual(
            self.parent_conditions(INFRA, "gateway-conformance-infra-test")["Accepted"],
            ("True", "Accepted"),
        )
        yield self.expect(gw, "/", backend="infra-backend-v1")

    @inlineCallbacks
    def test_HTTPRouteExactPathMatching(self) -> Any:
        gw = self.serve(
            http_route(
                "exact-matching",
                [
                    {"matches": [path("Exact", "/")], "backendRefs": [backend("infra-backend-v1")]},
                    {
                        "matches": [path("Exact", "/v2")],
                        "backendRefs": [backend("infra-backend-v2")],
                    },
                ],
            )
        )
        yield self.expect(gw, "/", backend="infra-backend-v1")
        yield self.expect(gw, "/v2", backend="infra-backend-v2")
        for p in ("/v2/", "/v2/example", "/v2example", "/foo"):
            yield self.expect(gw, p, status=404)

    @inlineCallbacks
    def test_HTTPRouteMatching(self) -> Any:
        gw = self.serve(
            http_route(
                "matching",
                [
                    {
                        "matches": [path("PathPrefix", "/")],
                        "backendRefs": [backend("infra-backend-v1")],
                    },
                    {
                        "matches": [
                            {**path("PathPrefix", "/v2")},
                            {"headers": [{"name": "version", "value": "two"}]},
                        ],
                        "backendRefs": [backend("infra-backend-v2")],
                    },
                ],
            )
        )
        yield self.expect(gw, "/", backend="infra-backend-v1")
        yield self.expect(gw, "/example", backend="infra-backend-v1")
        yield self.expect(gw, "/", headers={"Version": "one"}, backend="infra-backend-v1")
        yield self.expect(gw, "/v2", backend="infra-backend-v2")
        yield self.expect(gw, "/v2/example", backend="infra-backend-v2")
        yield self.expect(gw, "/", headers={"Version": "two"}, backend="infra-backend-v2")

    @inlineCallbacks
    def test_HTTPRouteMethodMatching(self) -> Any:
        gw = self.serve(
            http_route(
                "method-matching",
                [
                    {"matches": [{"method": "POST"}], "backendRefs": [backend("infra-backend-v1")]},
                    {"matches": [{"method": "GET"}], "backendRefs": [backend("infra-backend-v2")]},
                ],
            )
        )
        yield self.expect(gw, "/", method="POST", backend="infra-backend-v1")
        yield self.expect(gw, "/", method="GET", backend="infra-backend-v2")
        yield self.expect(gw, "/", method="HEAD", status=404)

    @inlineCallbacks
    def test_HTTPRouteQueryParamMatching(self) -> Any:
        def q(**values: str) -> dict[str, Any]:
            return {"queryParams": [{"name": k, "value": v} for k, v in values.items()]}

        gw = self.serve(
            http_route(
                "query-param-matching",
                [
                    {"matches": [q(animal="whale")], "backendRefs": [backend("infra-backend-v1")]},
                    {
                        "matches": [q(animal="dolphin")],
                        "backendRefs": [backend("infra-backend-v2")],
                    },
                    {
                        "matches": [q(animal="dolphin", color="blue"), q(ANIMAL="Whale")],
                        "backendRefs": [backend("infra-backend-v3")],
                    },
                ],
            )
        )
        yield self.expect(gw, "/?animal=whale", backend="infra-backend-v1")
        yield self.expect(gw, "/?animal=dolphin", backend="infra-backend-v2")
        yield self.expect(gw, "/?animal=dolphin&color=blue", backend="infra-backend-v3")
        yield self.expect(gw, "/?ANIMAL=Whale", backend="infra-backend-v3")
        for p in ("/?animal=elephant", "/?animal=dolphinblue", "/?ANIMAL=whale", "/"):
            yield self.expect(gw, p, status=404)
