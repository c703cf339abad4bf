"""Corral: a self-hosted runtime manager speaking ARM's hybrid REST API."""

__version__ = "0.1.0"
