"""Tenant intent and operator policy: parsing, validation and the immutable model."""
