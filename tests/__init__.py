"""tenantgw tests."""
