"""Shared building blocks with plain arguments (no model configs): attention, layers."""
