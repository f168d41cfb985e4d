"""
The one list of the kinds tenantgw reads.

Every source (a directory of manifests, the Kubernetes watches), the test API
server and the RBAC in deploy/ are derived from this table, so a kind added
for a new dialect cannot be read by one and forgotten by another (a test
checks deploy/ against it).
"""

from __future__ import annotations

from attrs import frozen


@frozen
class Kind:
    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True
    # Custom resources (Gateway API) may not be installed in a cluster: a
    # missing kind degrades only the dialect that needs it.
    optional: bool = False
    # RBAC verbs the gateway needs on it (Secrets: get by name only).
    verbs: tuple[str, ...] = ("get", "list", "watch")
    # RBAC verbs on its status subresource (the leader writes statuses there
    # only, never the object: tenantgw.status).  Empty: no status is written.
    status_verbs: tuple[str, ...] = ()

    @property
    def status_resource(self) -> str:
        """The RBAC resource name of its status subresource."""
        return f"{self.plural}/status"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def collection_path(self) -> str:
        """The cluster-wide collection, as a watch lists it."""
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{prefix}/{self.plural}"


GATEWAY_GROUP = "gateway.networking.k8s.io"
STATUS_WRITES = ("update",)  # the writer replaces (PUT) with the resourceVersion it read

KINDS: tuple[Kind, ...] = (
    Kind("Namespace", "", "v1", "namespaces", namespaced=False),
    Kind("ConfigMap", "", "v1", "configmaps"),
    Kind("Secret", "", "v1", "secrets", verbs=("get",)),  # by name: sources/secrets.py
    Kind("Service", "", "v1", "services"),
    Kind("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices"),
    Kind(
        "GatewayClass",
        GATEWAY_GROUP,
        "v1",
        "gatewayclasses",
        namespaced=False,
        optional=True,
        status_verbs=STATUS_WRITES,
    ),
    Kind("Gateway", GATEWAY_GROUP, "v1", "gateways", optional=True, status_verbs=STATUS_WRITES),
    Kind("HTTPRoute", GATEWAY_GROUP, "v1", "httproutes", optional=True, status_verbs=STATUS_WRITES),
    Kind("GRPCRoute", GATEWAY_GROUP, "v1", "grpcroutes", optional=True, status_verbs=STATUS_WRITES),
    Kind("ReferenceGrant", GATEWAY_GROUP, "v1beta1", "referencegrants", optional=True),
    Kind("Ingress", "networking.k8s.io", "v1", "ingresses", status_verbs=STATUS_WRITES),
    Kind("IngressClass", "networking.k8s.io", "v1", "ingressclasses", namespaced=False),
)

KIND_NAMES = frozenset(k.kind for k in KINDS)


def kind_named(name: str) -> Kind:
    return next(k for k in KINDS if k.kind == name)
