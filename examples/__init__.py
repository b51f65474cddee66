"""Runnable example sweeps on data that ships inside a package (no downloads)."""
