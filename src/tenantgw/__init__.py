"""tenantgw: a multi-tenant reverse-proxy gateway for Kubernetes, on Twisted."""
