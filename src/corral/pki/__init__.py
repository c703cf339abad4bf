"""Certificates: `keys` for both sides, `authority` for the control plane's CA."""
