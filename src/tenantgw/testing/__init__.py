"""Test doubles that ship with tenantgw (a fake Kubernetes API server)."""
