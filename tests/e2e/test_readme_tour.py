"""The README's five-minute tour, run as written: its commands in order, in a folder of their
own (a checkout's `.venv`, `Makefile` and `pyproject.toml`), from `make serve` to the last
`app delete`. Its two long-running commands (`make serve`, `agent run`) run in the background
as in their own terminals, and the next command waits, as a reader does, for what they start.
Only the port numbers and `/tmp/` are changed, so that the test shares nothing with another
run. A change to the README that breaks the tour fails here."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import free_port, kill_processes_under
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]
FOREGROUND = ("make serve", "agent run")


def tour() -> list[str]:
    """The tour's commands, a continued line joined, comments dropped."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## A five-minute tour", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    return [line for line in (re.sub(r"\s+# .*$", "", raw).strip()
                              for raw in joined.splitlines())
            if line and not line.startswith("#")]


class Tour:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.gateway = free_port(), free_port()
        for name in (".venv", "Makefile", "pyproject.toml"):
            (folder / name).symlink_to(ROOT / name)
        self.env = {**os.environ, "CORRAL_GATEWAY_PORT": str(self.gateway),
                    "CORRAL_PORT": str(self.port), "HOME": str(folder)}
        for variable in ("CORRAL_ADMIN_PASSWORD", "CORRAL_URL", "CORRAL_TOKEN", "CORRAL_ENV"):
            self.env.pop(variable, None)
        self.background: list[subprocess.Popen[bytes]] = []
        self.script: list[str] = []

    def as_here(self, command: str) -> str:
        return command.replace("8080", str(self.port)).replace("/tmp/", f"{self.folder}/tmp/")

    def run_script(self) -> None:
        if not self.script:
            return
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(self.script)],
                           cwd=self.folder, env=self.env, capture_output=True, text=True,
                           timeout=300, check=False)
        assert r.returncode == 0, f"{self.script}\n{r.stdout}\n{r.stderr}\n{self.logs()}"
        self.output = r.stdout
        self.script = []

    def start(self, command: str) -> None:
        log = open(self.folder / f"background-{len(self.background)}.log", "wb")  # noqa: SIM115
        self.background.append(subprocess.Popen(
            ["bash", "-c", command], cwd=self.folder, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True))
        log.close()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.folder.glob("background-*.log")))

    def answers(self) -> None:
        def status() -> int:
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/livez").status_code
            except httpx.HTTPError:
                return 0
        eventually(status, lambda code: code == 200, timeout=120,
                   what=f"make serve answering\n{self.logs()}")

    def server_running(self) -> None:
        def listed() -> str:
            return subprocess.run([".venv/bin/corral", "server", "list"], cwd=self.folder,
                                  env=self.env, capture_output=True, text=True,
                                  check=False).stdout
        eventually(listed, lambda out: "RUNNING" in out, timeout=60, what="web-1 RUNNING")

    def walk(self) -> None:
        (self.folder / "tmp").mkdir(exist_ok=True)
        for command in map(self.as_here, tour()):
            if any(word in command for word in FOREGROUND):
                self.run_script()
                self.start(command)
                self.answers() if "make serve" in command else self.server_running()
            else:
                self.script.append(command)
        self.run_script()

    def stop(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.background = []


@pytest.fixture
def walker(tmp_path: Path) -> Iterator[Tour]:
    installed = ROOT / ".venv" / "bin" / "corral"
    if not installed.exists() or \
            installed.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        pytest.skip("the checkout is not installed by `make install` since pyproject.toml "
                    "changed: the tour's `make serve` would install it again")
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"corral-tour-{tmp_path.name}"
    folder.mkdir()
    folder.chmod(0o711)  # the agent starts applications as `nobody`, who must reach them
    walking = Tour(folder)
    try:
        yield walking
    finally:
        walking.stop()
        kill_processes_under(folder)
        subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.mark.slow
def test_the_tour_as_written_on_a_fresh_folder(walker: Tour) -> None:
    commands = tour()
    assert commands[0] == "make serve" and commands[-1].endswith("app delete hello --yes")
    walker.walk()
    assert "Deleted" in walker.output or "deleted" in walker.output.lower(), walker.output


@pytest.mark.slow
def test_the_tour_after_an_earlier_make_serve(walker: Tour) -> None:
    """A reader who ran the set-up's `make serve` first: the folder and its generated password
    exist already, and the tour still signs in."""
    walker.start("make serve")
    walker.answers()
    walker.stop()
    assert (walker.folder / "corral-data" / "admin-credentials").exists()
    walker.walk()
