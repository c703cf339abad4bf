"""The test application the end-to-end tests deploy, and asking it what it runs."""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

import httpx

from tests.e2e.processes import AgentProcess
from tests.support import local_http

WEB_APP = '''
import http.server, json, os, sys
VERSION = {version!r}
def levels():  # the convention for log levels: re-read the file the agent keeps current
    try:
        with open(os.environ.get("CORRAL_LOG_LEVELS_FILE", "")) as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line)
    except OSError:
        return None
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"version": VERSION, "pid": os.getpid(), "argv": sys.argv[1:],
                           "env": dict(os.environ), "logLevels": levels()}}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): print("request", *a, flush=True)
print("listening on", os.environ["PORT"], flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def app_zip(version: str = "v1", procfile: str = "web: python3 app.py ${greeting}\n",
            extra: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", procfile)
        z.writestr("app.py", WEB_APP.format(version=version))
        for name, content in (extra or {}).items():
            z.writestr(name, content)
    return buf.getvalue()


def ask(port: int, timeout: float = 2, settle: float = 10) -> dict[str, Any]:
    """The test application's answer. A process reported STARTED without a health check may
    not listen yet, and one being replaced by a redeploy may reset a connection it accepted:
    both are retried for `settle` seconds (0: ask once)."""
    deadline = time.monotonic() + settle
    while True:
        try:
            return local_http().get(f"http://127.0.0.1:{port}/", timeout=timeout).json()  # type: ignore[no-any-return]
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def app_port(agent: AgentProcess, name: str) -> int:
    state = json.loads((agent.directory / "state.json").read_text())
    return int(state["apps"][name]["port"])
