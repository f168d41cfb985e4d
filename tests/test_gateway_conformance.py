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
        conditions = self.parent_conditions(INFRA, "gateway-conformance-infra-test")
        self.assertEqual(conditions["Accepted"], ("True", "Accepted"))
        self.assertEqual(conditions["ResolvedRefs"], ("True", "ResolvedRefs"))
        yield self.expect(gw, "/", backend="infra-backend-v1")

    @inlineCallbacks
    def test_HTTPRouteExactPathMatching(self) -> Any:
        gw = self.serve(
            http_route(
                "exact-matching",
                [
                    {
                        "matches": [path("Exact", "/one")],
                        "backendRefs": [backend("infra-backend-v1")],
                    },
                    {
                        "matches": [path("Exact", "/two")],
                        "backendRefs": [backend("infra-backend-v2")],
                    },
                ],
            )
        )
        yield self.expect(gw, "/one", backend="infra-backend-v1")
        yield self.expect(gw, "/two", backend="infra-backend-v2")
        for p in ("/", "/one/example", "/two/", "/Two"):
            yield self.expect(gw, p, status=404)

    @inlineCallbacks
    def test_HTTPRouteMatching(self) -> Any:
        gw = self.serve(
            http_route(
                "matching",
                [
                    {
                        "matches": [
                            path("PathPrefix", "/"),
                            {"headers": [{"name": "version", "value": "one"}]},
                        ],
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
        def m(method: str | None = None, **extra: Any) -> dict[str, Any]:
            return {**({"method": method} if method else {}), **extra}

        def v(value: str) -> dict[str, Any]:
            return {"headers": [{"name": "version", "value": value}]}

        rules = [
            ([m("POST")], "infra-backend-v1"),
            ([m("GET")], "infra-backend-v2"),
            # Combinations with core match types.
            ([m("GET", **path("PathPrefix", "/path1"))], "infra-backend-v1"),
            ([m("PUT", **v("one"))], "infra-backend-v2"),
            ([m("POST", **path("PathPrefix", "/path2"), **v("two"))], "infra-backend-v3"),
            # (cond1 AND cond2) OR (cond3 AND cond4 AND cond5)
            (
                [
                    m("PATCH", **path("PathPrefix", "/path3")),
                    m("DELETE", **path("PathPrefix", "/path4"), **v("three")),
                ],
                "infra-backend-v1",
            ),
            # Matches for checking precedence.
            ([m(**path("PathPrefix", "/path5"))], "infra-backend-v1"),
            ([m("PATCH")], "infra-backend-v2"),
            ([m(**v("four"))], "infra-backend-v3"),
        ]
        gw = self.serve(
            http_route(
                "method-matching",
                [{"matches": ms, "backendRefs": [backend(b)]} for ms, b in rules],
            )
        )
        cases: list[tuple[str, str, dict[str, str] | None, str | None]] = [
            ("POST", "/", None, "infra-backend-v1"),
            ("GET", "/", None, "infra-backend-v2"),
            ("HEAD", "/", None, None),
            ("GET", "/path1", None, "infra-backend-v1"),
            ("PUT", "/", {"version": "one"}, "infra-backend-v2"),
            ("POST", "/path2", {"version": "two"}, "infra-backend-v3"),
            ("PATCH", "/path3", None, "infra-backend-v1"),
            ("DELETE", "/path4", {"version": "three"}, "infra-backend-v1"),
            ("PUT", "/", None, None),
            ("DELETE", "/path4", None, None),
            ("PATCH", "/path5", None, "infra-backend-v1"),
            ("PATCH", "/", {"version": "four"}, "infra-backend-v2"),
        ]
        for method, p, headers, expected in cases:
            yield self.expect(
                gw,
                p,
                method=method,
                headers=headers,
                status=200 if expected else 404,
                backend=expected,
            )

    @inlineCallbacks
    def test_HTTPRouteQueryParamMatching(self) -> Any:
        def q(**values: str) -> dict[str, Any]:
            return {"queryParams": [{"name": k, "value": v} for k, v in values.items()]}

        def v(value: str) -> dict[str, Any]:
            return {"headers": [{"name": "version", "value": value}]}

        rules = [
            ([q(animal="whale")], "infra-backend-v1"),
            ([q(animal="dolphin")], "infra-backend-v2"),
            ([q(animal="dolphin", color="blue"), q(ANIMAL="Whale")], "infra-backend-v3"),
            # Combinations with core match types.
            ([{**path("PathPrefix", "/path1"), **q(animal="whale")}], "infra-backend-v1"),
            ([{**v("one"), **q(animal="whale")}], "infra-backend-v2"),
            (
                [{**path("PathPrefix", "/path2"), **v("two"), **q(animal="whale")}],
                "infra-backend-v3",
            ),
            # (cond1 AND cond2) OR (cond3 AND cond4 AND cond5)
            (
                [
                    {**path("PathPrefix", "/path3"), **q(animal="shark")},
                    {**path("PathPrefix", "/path4"), **v("three"), **q(animal="kraken")},
                ],
                "infra-backend-v1",
            ),
            # Matches for checking precedence.
            ([path("PathPrefix", "/path5")], "infra-backend-v1"),
            ([q(animal="hydra")], "infra-backend-v2"),
            ([v("four")], "infra-backend-v3"),
        ]
        gw = self.serve(
            http_route(
                "query-param-matching",
                [{"matches": ms, "backendRefs": [backend(b)]} for ms, b in rules],
            )
        )
        cases: list[tuple[str, dict[str, str] | None, str | None]] = [
            ("/?animal=whale", None, "infra-backend-v1"),
            ("/?animal=dolphin", None, "infra-backend-v2"),
            ("/?animal=dolphin&color=blue", None, "infra-backend-v3"),
            ("/?ANIMAL=Whale", None, "infra-backend-v3"),
            ("/?animal=whale&otherparam=irrelevant", None, "infra-backend-v1"),
            ("/?animal=dolphin&color=yellow", None, "infra-backend-v2"),
            ("/?color=blue", None, None),
            ("/?animal=dog", None, None),
            ("/?animal=whaledolphin", None, None),
            ("/", None, None),
            ("/path1?animal=whale", None, "infra-backend-v1"),
            ("/?animal=whale", {"version": "one"}, "infra-backend-v2"),
            ("/path2?animal=whale", {"version": "two"}, "infra-backend-v3"),
            ("/path3?animal=shark", None, "infra-backend-v1"),
            ("/path4?animal=kraken", {"version": "three"}, "infra-backend-v1"),
            ("/?animal=shark", None, None),
            ("/path4?animal=kraken", None, None),
            ("/path5?animal=hydra", None, "infra-backend-v1"),
            ("/?animal=hydra", {"version": "four"}, "infra-backend-v3"),
        ]
        for p, headers, expected in cases:
            yield self.expect(
                gw, p, headers=headers, status=200 if expected else 404, backend=expected
            )
