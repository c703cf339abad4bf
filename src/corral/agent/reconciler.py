"""Converging this server to its desired state, and remembering what it runs.

The record (`state.json`) holds the last desired state and, per application, the deployment it
runs and its processes. With it a restarted agent — even after kill -9, even with the control
plane unreachable — adopts its running processes instead of starting second copies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from corral.agent import local_api, manifest
from corral.agent.app_user import SYSTEM_PATH, AppUser
from corral.agent.archive import ArchiveRefused, unpack
from corral.agent.cluster import ClusterManager
from corral.agent.layout import LEVELS_FILE, AgentDir, write_json_atomic
from corral.agent.supervisor import AppRunner, Proc, RunSpec
from corral.wire import ApplicationReport, Desired, DesiredApplication, Report

log = logging.getLogger(__name__)

Fetcher = Callable[[DesiredApplication, Path], Awaitable[None]]
"""Downloads an application's artifact to the given path, verified by its sha256."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DOWNLOAD_RETRY_SECONDS = 2.0


class DownloadInterrupted(Exception):
    """The artifact's download broke off (the gateway went away, the network failed): the
    deployment has not failed, it is retried, from whichever gateway the agent reaches next."""


class Reconciler:
    def __init__(self, layout: AgentDir, fetch: Fetcher, server_id: int,
                 cluster: ClusterManager | None = None, agent_url: str = "",
                 app_user: AppUser | None = None) -> None:
        self.layout = layout
        self.app_user = app_user
        self.fetch = fetch
        self.server_id = server_id
        self.cluster = cluster
        self.agent_url = agent_url
        self.desired: Desired | None = None
        self.runners: dict[str, AppRunner] = {}
        self.failures: dict[str, tuple[int, str]] = {}  # name → (deploymentId, why)
        self.ports: dict[str, int] = {}
        self.levels: dict[str, str] = {}  # name → what its log-levels file says
        self.changed = asyncio.Event()  # something to report
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- the record ------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.layout.state.read_text())
            return data
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("state.json is damaged; starting from an empty record")
            return {}

    def save(self) -> None:
        apps = {}
        for name, runner in self.runners.items():
            apps[name] = {
                "deploymentId": runner.spec.deployment_id,
                "sha256": runner.spec.sha256,
                "port": runner.spec.port,
                "processes": runner.records(),
            }
        desired = self.desired.model_dump() if self.desired else None
        if desired and desired.get("cluster"):
            desired["cluster"]["secret"] = self.layout.seal(desired["cluster"]["secret"])
        for app in (desired or {}).get("applications") or []:
            # kept so that applications restart while the control plane is away, sealed with a
            # key derived from the server's own (state.json is 0600 too)
            app["secureProperties"] = {k: self.layout.seal(v)
                                       for k, v in app["secureProperties"].items()}
        write_json_atomic(self.layout.state, {"desired": desired, "apps": apps})

    async def recover(self, repoint: str | None = None) -> None:
        """Adopt what a previous agent left running, then converge to the remembered state.
        `repoint`: why the processes' environment is no longer true (the local API moved):
        they are stopped here, and converging starts them again with the new one."""
        record = self.load()
        if record.get("desired"):
            desired = record["desired"]
            if desired.get("cluster"):
                desired["cluster"]["secret"] = self.layout.unseal(desired["cluster"]["secret"])
            for app in desired.get("applications") or []:
                app["secureProperties"] = {k: self.layout.unseal(v) for k, v in
                                           (app.get("secureProperties") or {}).items()}
            self.desired = Desired.model_validate(desired)
        wanted = {a.name: a for a in (self.desired.applications if self.desired else [])}
        for name, saved in (record.get("apps") or {}).items():
            self.ports[name] = int(saved.get("port") or 0) or free_port()
            app = wanted.get(name)
            spec = None
            if app and app.deploymentId == saved.get("deploymentId") and \
                    app.artifact.sha256 == saved.get("sha256"):
                with contextlib.suppress(ArchiveRefused, OSError):
                    spec = self._spec(app)
            if spec is None:
                _kill_records(saved.get("processes") or [])
                continue
            runner = AppRunner(spec, self._changed)
            adopted = runner.adopt(saved.get("processes") or [])
            log.info("%s: adopted %d running process(es)", name, adopted)
            self.runners[name] = runner
            if repoint and adopted:
                log.info("%s: restarting: %s", name, repoint)
                await runner.stop()
        self.save()
        self.kick()

    # --- converging --------------------------------------------------------------------------

    def apply(self, desired: Desired) -> None:
        self.desired = desired
        self.save()
        self.kick()

    def kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while self._wake.is_set():
            self._wake.clear()
            try:
                await self.converge()
            except Exception:
                log.exception("reconcile failed; will retry")
                await asyncio.sleep(2)
                self._wake.set()

    async def converge(self) -> None:
        if self.desired is None:
            return
        if self.cluster is not None:
            await self.cluster.apply(self.desired.cluster)
        wanted = {a.name: a for a in self.desired.applications}
        for name in list(self.runners):
            if name not in wanted:
                await self._remove(name)
        for name in list(self.failures):
            if name not in wanted:
                del self.failures[name]
                self._changed()
        for app in self.desired.applications:
            try:
                await self._converge_one(app)
            except Exception as exc:  # one application's failure is its own, never the others'
                log.exception("%s: deployment %d failed", app.name, app.deploymentId)
                self.failures[app.name] = (app.deploymentId, f"{type(exc).__name__}: {exc}"[:500])
                self._changed()
        self.save()

    async def _converge_one(self, app: DesiredApplication) -> None:
        runner = self.runners.get(app.name)
        same = (
            runner is not None
            and runner.spec.deployment_id == app.deploymentId
            and runner.spec.sha256 == app.artifact.sha256
        )
        if not same:
            failed = self.failures.get(app.name)
            if failed and failed[0] == app.deploymentId:
                return  # this deployment already failed; a redeploy brings a new id
            try:
                spec = await self._prepare(app)
            except DownloadInterrupted as exc:
                log.warning("%s: downloading deployment %d broke off (%s); retrying in %.0f s",
                            app.name, app.deploymentId, exc, DOWNLOAD_RETRY_SECONDS)
                asyncio.get_running_loop().call_later(DOWNLOAD_RETRY_SECONDS, self.kick)
                return
            except (ArchiveRefused, OSError, ValueError) as exc:
                self.failures[app.name] = (app.deploymentId, str(exc))
                log.warning("%s: deployment %d failed: %s", app.name, app.deploymentId, exc)
                self._changed()
                return
            self.failures.pop(app.name, None)
            if runner is not None:
                await runner.stop()
            runner = AppRunner(spec, self._changed)
            self.runners[app.name] = runner
            self._changed()
        assert runner is not None
        self._write_levels(app)
        if app.desiredStatus == "STARTED" and not runner.running:
            runner.start()
            self.save()
        elif app.desiredStatus == "STOPPED" and (runner.running or runner.procs):
            await runner.stop()
            self.save()
        self._prune_old_versions(app.name, app.artifact.sha256)

    async def _prepare(self, app: DesiredApplication) -> RunSpec:
        self.failures.pop(app.name, None)
        cached = self.layout.artifacts / f"{app.artifact.sha256}.zip"
        if not cached.exists():
            await self.fetch(app, cached)
        destination = self.layout.app_dir(app.name, app.artifact.sha256)
        if not (destination / "Procfile").exists():
            await asyncio.to_thread(unpack, cached, destination)
            destination.parent.chmod(0o711)  # traversable by the app user, whatever the umask
            if self.app_user is not None:
                await asyncio.to_thread(self.app_user.take, destination)
        return self._spec(app)

    def _spec(self, app: DesiredApplication) -> RunSpec:
        app_dir = self.layout.app_dir(app.name, app.artifact.sha256)
        declared = manifest.load(app_dir)
        properties = {**declared.properties, **app.properties, **app.secureProperties}
        port = int(properties.get("http.port") or properties.get("port") or 0) or \
            self.ports.setdefault(app.name, free_port())
        self.ports[app.name] = port
        props_for_commands = {**properties, "PORT": str(port)}
        processes: dict[str, str] = {}
        carried: dict[str, str] = {}
        for pname, command in declared.processes.items():
            processes[pname], variables = manifest.substitute(command, props_for_commands)
            carried.update(variables)
        other_user = self.app_user is not None and not self.app_user.is_self
        env = {
            # another user cannot reach the agent's own tool folders (e.g. under /root)
            "PATH": SYSTEM_PATH if other_user else os.environ.get("PATH", SYSTEM_PATH),
            "HOME": str(app_dir) if other_user else os.environ.get("HOME", "/"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1",  # a Python app's output reaches its log as it is printed
            **manifest.environment_names(properties),
            **carried,
            "PORT": str(port),
            "CORRAL_APP_NAME": app.name,
            "CORRAL_SERVER_ID": str(self.server_id),
            "CORRAL_SERVER_NAME": self.desired.serverName if self.desired else "",
            "CORRAL_DEPLOYMENT_ID": str(app.deploymentId),
            # the levels as of the start; the file follows every change (README, "Servers and agents")
            "CORRAL_LOG_LEVELS": ",".join(f"{k}={v}" for k, v in _levels(app).items()),
            "CORRAL_LOG_LEVELS_FILE": str(self.layout.levels_file(app.name)),
        }
        if self.agent_url:
            env["CORRAL_AGENT_URL"] = local_api.app_url(self.agent_url, app.name)
        if self.desired and self.desired.cluster:
            env["CORRAL_CLUSTER_ID"] = str(self.desired.cluster.id)
            env["CORRAL_CLUSTER_NODES"] = ",".join(
                str(m.serverId) for m in self.desired.cluster.members
            )
        return RunSpec(
            name=app.name,
            deployment_id=app.deploymentId,
            sha256=app.artifact.sha256,
            app_dir=app_dir,
            processes=processes,
            env=env,
            log_path=self.layout.log_file(app.name),
            stop_timeout=declared.stop_timeout,
            health=declared.health,
            port=port,
            user=self.app_user.ids if other_user and self.app_user else None,
        )

    def _write_levels(self, app: DesiredApplication) -> None:
        """`scope=LEVEL` lines, replaced whole, in the agent's own folder of the application
        (the application may read it, not change it); only when they change, so an
        application watching the file's time sees changes only."""
        text = "".join(f"{k}={v}\n" for k, v in _levels(app).items())
        path = self.layout.levels_file(app.name)
        if self.levels.get(app.name) == text and path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # whatever the umask: the application's user reads it
        os.replace(tmp, path)
        self.levels[app.name] = text

    async def _remove(self, name: str) -> None:
        await self.runners[name].stop()
        shutil.rmtree(self.layout.apps / name, ignore_errors=True)
        del self.runners[name]
        self.ports.pop(name, None)
        self.levels.pop(name, None)
        self._changed()
        log.info("%s: removed", name)

    def _prune_old_versions(self, name: str, keep: str) -> None:
        folder = self.layout.apps / name
        if folder.is_dir():
            for child in folder.iterdir():
                if child.name not in (keep, LEVELS_FILE):
                    shutil.rmtree(child, ignore_errors=True)

    # --- reporting ---------------------------------------------------------------------------

    def _changed(self) -> None:
        self.changed.set()

    def report(self) -> Report:
        apps: list[ApplicationReport] = []
        wanted = self.desired.applications if self.desired else []
        for app in wanted:
            failed = self.failures.get(app.name)
            runner = self.runners.get(app.name)
            # an earlier deployment may still serve while this one is fetched (or failed to be)
            serving = runner is not None and runner.status == "STARTED"
            if failed and failed[0] == app.deploymentId:
                apps.append(ApplicationReport(name=app.name, deploymentId=app.deploymentId,
                                              status="DEPLOYMENT_FAILED", message=failed[1],
                                              serving=serving))
            elif runner is not None and runner.spec.deployment_id == app.deploymentId:
                apps.append(ApplicationReport(name=app.name, deploymentId=app.deploymentId,
                                              status=runner.status, message=runner.message,
                                              port=runner.spec.port or None, serving=serving))
            else:
                apps.append(ApplicationReport(name=app.name, deploymentId=app.deploymentId,
                                              status="DEPLOYING", serving=serving))
        view = self.cluster.view() if self.cluster is not None else None
        return Report(revision=self.desired.revision if self.desired else 0, applications=apps,
                      cluster=view)

    async def shutdown(self) -> None:
        """The agent stops; applications keep running (a restarted agent adopts them)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for runner in self.runners.values():
            runner.detach()
        self.save()
        if self.cluster is not None:
            await self.cluster.close()


def _levels(app: DesiredApplication) -> dict[str, str]:
    """Only what can be neither another entry nor another line: the control plane checks the
    same, this agent does not rely on it."""
    return {scope: level for scope, level in sorted(app.logLevels.items())
            if scope and level.isalpha() and all(c.isalnum() or c in "._$*-" for c in scope)}


def _kill_records(records: list[dict[str, Any]]) -> None:
    """Processes of a deployment that is no longer wanted: stop them outright."""
    for rec in records:
        proc = Proc(rec["name"], int(rec["pid"]), rec.get("starttime"))
        if proc.alive():
            proc.signal_group(signal.SIGTERM)
