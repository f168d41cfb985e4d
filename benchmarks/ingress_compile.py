"""
Compile time for 1,000 Ingresses (one per namespace, two paths, a regex
rewrite-target, limit-rps and enable-cors): cold, and a rebuild against the
previous snapshot.

    python benchmarks/ingress_compile.py
"""

import time

from tenantgw.compile.compiler import CompileOptions, compile_snapshot

objs = [
    {
        "kind": "IngressClass",
        "metadata": {"name": "tenantgw"},
        "spec": {"controller": "tenantgw.io/ingress-controller"},
    }
]
for i in range(1000):
    ns = f"team-{i:04d}"
    objs.append(
        {
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "annotations": {"tenantgw.io/allowed-hosts": f"{ns}.example.com"},
            },
        }
    )
    objs.append(
        {
            "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }
    )
    objs.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "web",
                "namespace": ns,
                "annotations": {
                    "nginx.ingress.kubernetes.io/rewrite-target": "/$2",
                    "nginx.ingress.kubernetes.io/limit-rps": "10",
                    "nginx.ingress.kubernetes.io/enable-cors": "true",
                },
            },
            "spec": {
                "ingressClassName": "tenantgw",
                "rules": [
                    {
                        "host": f"{ns}.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/api(/|$)(.*)",
                                    "pathType": "ImplementationSpecific",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                },
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                },
                            ]
                        },
                    }
                ],
            },
        }
    )
t = time.perf_counter()
s = compile_snapshot(objs, CompileOptions())
cold = time.perf_counter() - t
t = time.perf_counter()
s = compile_snapshot(objs, CompileOptions(), s)
re = time.perf_counter() - t
print(
    f"1000 Ingresses: cold {cold * 1000:.0f} ms, rebuild {re * 1000:.0f} ms; serving {sum(1 for x in s.statuses.values() if x.serving)}"
)
