"""The agent gateway: mutual-TLS websockets between the control plane and its agents.

One module per job: `tls` (the server's TLS), `gateway` (accepting and identifying
connections), `connection` (one agent's messages), `pusher` (desired state out), `reports`
(reports in), `artifacts` (artifact downloads) and `sweeper` (the periodic safety net)."""
