"""Backends: where slots execute. See :mod:`vyre.backends.base` for the shared interface."""
