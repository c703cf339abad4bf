"""Corral's benchmark harness: `python -m bench all` (see docs/performance.md)."""
