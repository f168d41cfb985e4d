"""
The one exception a tenant file can raise.

A tenant fixing their file should see every problem in one round trip
(one Kubernetes Event), not one per edit, so the exception carries all of
them.
"""

from __future__ import annotations

from collections.abc import Iterable

from tenantgw.config.model import FieldError

__all__ = ["FieldError", "TenantConfigError"]


class TenantConfigError(Exception):
    """A tenant file was refused as a whole; C{errors} says why, field by field."""

    errors: tuple[FieldError, ...]

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = tuple(errors)
        if not self.errors:
            raise ValueError("TenantConfigError needs at least one FieldError")
        super().__init__(self.errors)

    def __str__(self) -> str:
        count = len(self.errors)
        heading = f"tenant.yaml rejected ({count} problem{'s' if count != 1 else ''}):"
        return "\n".join([heading, *(f"  - {error}" for error in self.errors)])
