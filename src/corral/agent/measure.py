"""What the agent measures every `Desired.metricsSeconds`: the server (CPU, memory, the disk of
its data folder, load, threads) and each application's process trees (CPU, RSS, threads, open
files, restarts, uptime), with what each application pushed to its agent since the last
sample (`Pushed`). psutil reads /proc; a process that ends while it is read simply counts
no more."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from corral import wire


@dataclass
class _Pushes:
    messages: int = 0
    errors: int = 0
    response_sum: float = 0.0
    responses: int = 0


class Pushed:
    """Counts applications push (`POST $CORRAL_AGENT_URL/v1/metrics`), summed until the next
    sample takes them. An application that never pushed reports None, not zero."""

    def __init__(self) -> None:
        self._apps: dict[str, _Pushes] = {}

    def add(self, application: str, messages: int, errors: int,
            response_time_ms: float | None) -> None:
        p = self._apps.setdefault(application, _Pushes())
        p.messages += messages
        p.errors += errors
        if response_time_ms is not None:
            p.response_sum += response_time_ms
            p.responses += 1

    def take(self, application: str) -> tuple[int | None, int | None, float | None]:
        p = self._apps.get(application)
        if p is None:
            return None, None, None
        self._apps[application] = _Pushes()
        return (min(p.messages, wire.MAX_COUNT), min(p.errors, wire.MAX_COUNT),
                p.response_sum / p.responses if p.responses else None)

    def forget(self, keep: Iterable[str]) -> None:
        kept = set(keep)
        for name in [n for n in self._apps if n not in kept]:
            del self._apps[name]


@dataclass
class Running:
    """One application as the supervisor runs it: the root pids of its processes."""

    pids: list[int]
    restarts: int
    uptime: float


class Meter:
    """psutil's CPU percentages are since the previous reading of the same `Process`, so the
    meter keeps one per pid between samples."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._procs: dict[int, psutil.Process] = {}
        self._me = psutil.Process()
        psutil.cpu_percent(None)  # the first reading starts the interval

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            with contextlib.suppress(psutil.Error):
                proc = self._procs[pid] = psutil.Process(pid)
                proc.cpu_percent(None)
        return proc

    def _tree(self, pids: Iterable[int]) -> list[psutil.Process]:
        tree: list[psutil.Process] = []
        for pid in pids:
            root = self._process(pid)
            if root is None:
                continue
            tree.append(root)
            with contextlib.suppress(psutil.Error):
                tree.extend(p for c in root.children(recursive=True)
                            if (p := self._process(c.pid)) is not None)
        return tree

    def sample(self, apps: Mapping[str, Running], pushed: Pushed) -> wire.Measurements:
        seen: set[int] = {self._me.pid}
        threads = self._me.num_threads()
        instances = []
        for name, running in apps.items():
            cpu = 0.0
            rss = n_threads = fds = 0
            for proc in self._tree(running.pids):
                if proc.pid in seen:
                    continue
                seen.add(proc.pid)
                with contextlib.suppress(psutil.Error), proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    n_threads += proc.num_threads()
                    fds += proc.num_fds()
            threads += n_threads
            messages, errors, response = pushed.take(name)
            instances.append(wire.InstanceSample(
                name=name, cpu=min(cpu, 1e5), rss=rss, threads=n_threads, fds=fds,
                restarts=running.restarts, uptime=max(0.0, running.uptime),
                messages=messages, errors=errors, responseTimeMs=response))
        for pid in [p for p in self._procs if p not in seen]:
            del self._procs[pid]  # ended, or no longer an application's
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(str(self.data_dir))
        return wire.Measurements(
            server=wire.ServerSample(
                cpu=min(100.0, psutil.cpu_percent(None)), memoryUsed=memory.total - memory.available,
                memoryTotal=memory.total, diskUsed=disk.used, diskTotal=disk.total,
                loadAverage=os.getloadavg()[0], threads=threads),
            applications=instances)
