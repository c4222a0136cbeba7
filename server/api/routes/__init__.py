"""Thin HTTP handlers, one module per API surface."""
