"""The reconciler on real processes: converge, record, adopt after a restart, remove."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from pathlib import Path

from corral.agent.layout import AgentDir
from corral.agent.reconciler import Reconciler
from corral.agent.supervisor import proc_starttime
from corral.wire import ArtifactRef, Desired, DesiredApplication


def _artifact(procfile: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", procfile)
    return buf.getvalue()


def _desired(revision: int, apps: dict[str, tuple[bytes, str, int]]) -> Desired:
    return Desired(
        revision=revision, serverId=7, serverName="unit",
        applications=[
            DesiredApplication(
                name=name, applicationId=i, deploymentId=dep, desiredStatus=status,
                artifact=ArtifactRef(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob)),
            )
            for i, (name, (blob, status, dep)) in enumerate(apps.items(), 1)
        ],
    )


class Store:
    """The artifact source a real agent reaches over the gateway."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fetches = 0

    def add(self, blob: bytes) -> bytes:
        self.blobs[hashlib.sha256(blob).hexdigest()] = blob
        return blob

    async def fetch(self, app: DesiredApplication, destination: Path) -> None:
        self.fetches += 1
        destination.write_bytes(self.blobs[app.artifact.sha256])


async def _until(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def test_converge_adopt_and_remove(tmp_path: Path) -> None:
    layout = AgentDir(tmp_path)
    layout.make_dirs()
    store = Store()
    sleeper = store.add(_artifact("main: sleep 600\n"))
    broken = store.add(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: no Procfile

    async def first_life() -> int:
        rec = Reconciler(layout, store.fetch, 7)
        rec.apply(_desired(1, {"sleepy": (sleeper, "STARTED", 1), "bad": (broken, "STARTED", 1)}))
        await _until(lambda: "sleepy" in rec.runners and rec.runners["sleepy"].status == "STARTED")
        report = {a.name: a for a in rec.report().applications}
        assert report["bad"].status == "DEPLOYMENT_FAILED"
        assert "Procfile" in (report["bad"].message or "")
        pid = rec.runners["sleepy"].procs["main"].pid
        await rec.shutdown()  # the agent goes away; the application does not
        return pid

    pid = asyncio.run(first_life())
    assert proc_starttime(pid) is not None
    saved = json.loads(layout.state.read_text())
    assert saved["apps"]["sleepy"]["processes"][0]["pid"] == pid
    fetches = store.fetches

    async def second_life() -> None:
        rec = Reconciler(layout, store.fetch, 7)
        await rec.recover()
        await _until(lambda: "sleepy" in rec.runners)
        runner = rec.runners["sleepy"]
        assert runner.procs["main"].pid == pid  # adopted, not restarted
        await _until(lambda: runner.status == "STARTED")
        assert store.fetches == fetches  # cached artifact reused
        rec.apply(_desired(2, {}))
        await _until(lambda: not rec.runners)
        assert not (layout.apps / "sleepy").exists()
        await rec.shutdown()

    asyncio.run(second_life())
    assert proc_starttime(pid) is None


def test_stop_and_redeploy(tmp_path: Path) -> None:
    layout = AgentDir(tmp_path)
    layout.make_dirs()
    store = Store()
    v1 = store.add(_artifact("main: sleep 600\n"))
    v2 = store.add(_artifact("main: sleep 601\n"))

    async def scenario() -> None:
        rec = Reconciler(layout, store.fetch, 7)
        rec.apply(_desired(1, {"app": (v1, "STARTED", 1)}))
        await _until(lambda: "app" in rec.runners and rec.runners["app"].status == "STARTED")
        first = rec.runners["app"].procs["main"].pid
        rec.apply(_desired(2, {"app": (v1, "STOPPED", 1)}))
        await _until(lambda: rec.runners["app"].status == "STOPPED")
        assert proc_starttime(first) is None
        rec.apply(_desired(3, {"app": (v2, "STARTED", 2)}))
        await _until(lambda: rec.runners["app"].spec.deployment_id == 2
                     and rec.runners["app"].status == "STARTED")
        assert sorted(p.name for p in (layout.apps / "app").iterdir()) == [
            hashlib.sha256(v2).hexdigest(), "log-levels"]
        assert rec.report().applications[0].deploymentId == 2
        rec.apply(_desired(4, {}))
        await _until(lambda: not rec.runners)
        await rec.shutdown()

    asyncio.run(scenario())
    saved = json.loads(layout.state.read_text())
    assert saved["apps"] == {}  # what runs here is recorded: nothing, after the last change


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    """A process group that ignores SIGTERM is killed after the declared stop timeout."""
    layout = AgentDir(tmp_path)
    layout.make_dirs()
    store = Store()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", "main: trap '' TERM; sleep 600 & wait; sleep 600\n")
        z.writestr("corral.toml", "[stop]\ntimeout = 1\n")
    stubborn = store.add(buf.getvalue())

    async def scenario() -> float:
        rec = Reconciler(layout, store.fetch, 7)
        rec.apply(_desired(1, {"stubborn": (stubborn, "STARTED", 1)}))
        await _until(lambda: "stubborn" in rec.runners
                     and rec.runners["stubborn"].status == "STARTED")
        pid = rec.runners["stubborn"].procs["main"].pid
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        rec.apply(_desired(2, {"stubborn": (stubborn, "STOPPED", 1)}))
        await _until(lambda: rec.runners["stubborn"].status == "STOPPED")
        assert proc_starttime(pid) is None
        await rec.shutdown()
        return loop.time() - t0

    assert asyncio.run(scenario()) >= 1.0


def test_a_broken_off_download_is_retried_not_failed(tmp_path: Path) -> None:
    """The gateway went away mid-download (a replica killed): the deployment is not failed; the
    download is tried again and the application starts."""
    from corral.agent.reconciler import DownloadInterrupted

    layout = AgentDir(tmp_path)
    layout.make_dirs()
    store = Store()
    sleeper = store.add(_artifact("main: sleep 600\n"))
    broken_off = [True]

    async def flaky(app: DesiredApplication, destination: Path) -> None:
        if broken_off[0]:
            broken_off[0] = False
            raise DownloadInterrupted("artifact download failed: connection reset by peer")
        await store.fetch(app, destination)

    async def life() -> None:
        rec = Reconciler(layout, flaky, 7)
        rec.apply(_desired(1, {"sleepy": (sleeper, "STARTED", 1)}))
        await _until(lambda: not broken_off[0])  # the first download broke off
        # not failed: still deploying, until the retry (DOWNLOAD_RETRY_SECONDS later) succeeds
        assert {a.name: a.status for a in rec.report().applications} == {"sleepy": "DEPLOYING"}
        await _until(lambda: "sleepy" in rec.runners and rec.runners["sleepy"].status == "STARTED")
        assert not rec.failures
        for runner in rec.runners.values():
            await runner.stop()
        await rec.shutdown()

    asyncio.run(life())


def test_log_levels_file_follows_changes_without_a_restart(tmp_path: Path) -> None:
    layout = AgentDir(tmp_path)
    layout.make_dirs()
    store = Store()
    sleeper = store.add(_artifact("main: sleep 600\n"))

    def with_levels(revision: int, levels: dict[str, str]) -> Desired:
        desired = _desired(revision, {"app": (sleeper, "STARTED", 1)})
        desired.applications[0].logLevels = levels
        return desired

    async def scenario() -> None:
        rec = Reconciler(layout, store.fetch, 7)
        rec.apply(with_levels(1, {"org.example": "WARN", "bad\nroot": "TRACE", "a=b": "INFO"}))
        await _until(lambda: "app" in rec.runners and rec.runners["app"].status == "STARTED")
        path = layout.levels_file("app")
        assert path.read_text() == "org.example=WARN\n"  # what could inject a line is left out
        assert path.stat().st_mode & 0o777 == 0o644
        assert rec.runners["app"].spec.env["CORRAL_LOG_LEVELS"] == "org.example=WARN"
        assert rec.runners["app"].spec.env["CORRAL_LOG_LEVELS_FILE"] == str(path)
        pid = rec.runners["app"].procs["main"].pid
        rec.apply(with_levels(2, {"org.example": "DEBUG", "root": "ERROR"}))
        await _until(lambda: "DEBUG" in path.read_text())
        assert path.read_text() == "org.example=DEBUG\nroot=ERROR\n"
        assert rec.runners["app"].procs["main"].pid == pid  # not restarted
        rec.apply(_desired(3, {}))
        await _until(lambda: not rec.runners)
        assert not path.exists()
        await rec.shutdown()

    asyncio.run(scenario())
