"""Status reported back to tenants (contract section 9)."""
