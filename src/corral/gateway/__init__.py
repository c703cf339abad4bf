"""The agent gateway: mutual-TLS websockets between the control plane and its agents."""
