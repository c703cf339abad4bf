"""The agent that runs on each managed server: registration, connection, reconciler, runtime."""

AGENT_VERSION = "0.1.0"
