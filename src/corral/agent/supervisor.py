"""Running one application's Procfile processes: start, keep up with back-off, health, stop.

Processes run in their own session (process group), so they outlive the agent: a restarted
agent adopts them from its record (pid + kernel start time, so a recycled pid is never mistaken
for ours). Output goes straight to `logs/<app>.log`, which the agent rotates by copy-truncate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.agent.manifest import HealthCheck
from corral.wire import InstanceStatus

log = logging.getLogger(__name__)

MIN_UPTIME = 0.5  # a process counts as up once it has lived this long
STABLE_AFTER = 10.0  # ...and its crash counter resets after this long
FAILED_AFTER = 3  # consecutive crashes before the status says DEPLOYMENT_FAILED
MAX_BACKOFF = 30.0
LOG_MAX_BYTES = 10 * 1024 * 1024
POLL = 0.2


def proc_starttime(pid: int) -> int | None:
    """The kernel's start time of a live (non-zombie) process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


class Proc:
    def __init__(self, name: str, pid: int, starttime: int | None,
                 popen: subprocess.Popen[bytes] | None = None) -> None:
        self.name = name
        self.pid = pid
        self.starttime = starttime
        self.popen = popen
        self.spawned_at = time.monotonic()

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.starttime is not None and proc_starttime(self.pid) == self.starttime

    def exit_description(self) -> str:
        if self.popen is not None and self.popen.returncode is not None:
            code = self.popen.returncode
            return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return "is gone"

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "starttime": self.starttime}


@dataclass
class RunSpec:
    name: str
    deployment_id: int
    sha256: str
    app_dir: Path
    processes: dict[str, str]
    env: dict[str, str]
    log_path: Path
    stop_timeout: float
    health: HealthCheck | None
    port: int
    user: tuple[int, int] | None = None
    """(uid, gid) the processes run as; None: the agent's own."""


StatusCallback = Callable[[], None]


class AppRunner:
    def __init__(self, spec: RunSpec, on_change: StatusCallback) -> None:
        self.spec = spec
        self.on_change = on_change
        self.status: InstanceStatus = "STOPPED"
        self.message: str | None = None
        self.procs: dict[str, Proc] = {}
        self.restarts = 0
        """processes restarted after they died, since this agent started"""
        self.up_since = time.monotonic()
        self._watch: asyncio.Task[None] | None = None

    # --- status --------------------------------------------------------------------------

    def _set(self, status: InstanceStatus, message: str | None = None) -> None:
        if (status, message) != (self.status, self.message):
            self.status, self.message = status, message
            log.info("%s: %s%s", self.spec.name, status, f" ({message})" if message else "")
            self.on_change()

    @property
    def running(self) -> bool:
        return self._watch is not None and not self._watch.done()

    def records(self) -> list[dict[str, Any]]:
        return [p.record() for p in self.procs.values()]

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        self._set("STARTING")
        for pname, command in self.spec.processes.items():
            self.procs[pname] = self._spawn(pname, command)
        self._watch = asyncio.create_task(self._keep_up())

    def adopt(self, records: list[dict[str, Any]]) -> int:
        """Take over processes a previous agent started; returns how many were still alive."""
        alive = 0
        for rec in records:
            proc = Proc(rec["name"], int(rec["pid"]), rec.get("starttime"))
            if rec["name"] in self.spec.processes and proc.alive():
                self.procs[proc.name] = proc
                alive += 1
        if alive:
            for pname, command in self.spec.processes.items():
                if pname not in self.procs:
                    self.procs[pname] = self._spawn(pname, command)
            self._set("STARTING", "adopted running processes")
            self._watch = asyncio.create_task(self._keep_up())
        return alive

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if any(p.alive() for p in self.procs.values()):
            self._set("STOPPING")
            for p in self.procs.values():
                self._note(f"stopping {p.name} (SIGTERM)")
                p.signal_group(signal.SIGTERM)
            deadline = time.monotonic() + self.spec.stop_timeout
            while time.monotonic() < deadline and any(p.alive() for p in self.procs.values()):
                await asyncio.sleep(0.05)
            for p in self.procs.values():
                if p.alive():
                    log.warning("%s: %s ignored SIGTERM; killing", self.spec.name, p.name)
                    self._note(f"{p.name} still runs after {self.spec.stop_timeout:g}s; "
                               "killing it (SIGKILL)")
                    p.signal_group(signal.SIGKILL)
            while any(p.alive() for p in self.procs.values()):
                await asyncio.sleep(0.05)
            for p in self.procs.values():
                self._note(f"{p.name} stopped ({p.exit_description()})")
        self.procs.clear()
        self._set("STOPPED")

    def detach(self) -> None:
        """Stop watching without stopping the processes (the agent is shutting down)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    # --- internals -----------------------------------------------------------------------

    def _note(self, line: str) -> None:
        """A line of the agent's own in the application's log, beside what the application
        wrote: its starts, stops and exits, with their codes."""
        with contextlib.suppress(OSError), open(self.spec.log_path, "ab") as out:
            out.write(f"[corral] {line}\n".encode())

    def _spawn(self, pname: str, command: str) -> Proc:
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spec.log_path, "ab") as out:
            out.write(f"[corral] starting {pname}: {command}\n".encode())
            out.flush()
            as_user: dict[str, Any] = {}
            if self.spec.user is not None:
                uid, gid = self.spec.user
                as_user = {"user": uid, "group": gid, "extra_groups": []}
            popen = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=self.spec.app_dir,
                env=self.spec.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **as_user,
            )
        return Proc(pname, popen.pid, proc_starttime(popen.pid), popen)

    async def _keep_up(self) -> None:
        failures = 0
        up_at = time.monotonic()
        deadline = up_at + (self.spec.health.timeout if self.spec.health else 0)
        last_rotate = 0.0
        while True:
            await asyncio.sleep(POLL)
            now = time.monotonic()
            dead = [p for p in self.procs.values() if not p.alive()]
            if dead:
                failures = 0 if now - up_at >= STABLE_AFTER else failures
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2 ** (failures - 1))
                what = f"process {dead[0].name} {dead[0].exit_description()}"
                status: InstanceStatus = ("DEPLOYMENT_FAILED" if failures >= FAILED_AFTER
                                          else "STARTING")
                self._set(status, f"{what}; restart {failures} in {delay:.1f}s")
                for p in dead:
                    self._note(f"{p.name} {p.exit_description()}; restarting in {delay:.1f}s")
                await asyncio.sleep(delay)
                for p in dead:
                    self.procs[p.name] = self._spawn(p.name, self.spec.processes[p.name])
                self.restarts += len(dead)
                up_at = self.up_since = time.monotonic()
                deadline = up_at + (self.spec.health.timeout if self.spec.health else 0)
                continue
            if self.status != "STARTED":
                if now - up_at >= MIN_UPTIME and await self._healthy():
                    self._set("STARTED")
                elif self.spec.health and now > deadline and self.status != "DEPLOYMENT_FAILED":
                    self._set(
                        "DEPLOYMENT_FAILED",
                        f"health check did not pass within {self.spec.health.timeout:g}s",
                    )
            elif now - up_at >= STABLE_AFTER:
                failures = 0
            if now - last_rotate > 5:
                last_rotate = now
                rotate(self.spec.log_path)

    async def _healthy(self) -> bool:
        health = self.spec.health
        if health is None:
            return True
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.spec.port), 2
            )
        except (OSError, TimeoutError):
            return False
        try:
            if not health.http:
                return True
            writer.write(
                f"GET {health.http} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode()
            )
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 2)
            parts = line.split()
            return len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < 400
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def rotate(path: Path, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Copy-truncate: processes keep their O_APPEND descriptor and write on at the new end."""
    try:
        if path.stat().st_size <= max_bytes:
            return
        shutil.copyfile(path, path.with_suffix(".log.1"))
        with open(path, "r+b") as f:
            f.truncate(0)
    except FileNotFoundError:
        pass
