"""The agent writes its own lines into an application's log: each start, each exit with its
code, each stop. Real processes, the real supervisor."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from corral.agent.supervisor import AppRunner, RunSpec
from tests.support import eventually


def _spec(tmp_path: Path, command: str) -> RunSpec:
    return RunSpec(name="shop", deployment_id=1, sha256="0" * 64, app_dir=tmp_path,
                   processes={"web": command}, env=dict(os.environ), log_path=tmp_path / "app.log",
                   stop_timeout=1.0, health=None, port=0)


def test_exits_and_stops_are_in_the_applications_log(tmp_path: Path) -> None:
    async def scenario() -> None:
        crashing = AppRunner(_spec(tmp_path / "crash", "echo hello; exit 3"), lambda: None)
        (tmp_path / "crash").mkdir()
        crashing.start()
        await asyncio.to_thread(eventually, lambda: (tmp_path / "crash" / "app.log").read_text(),
                                lambda t: "restarting" in t, what="an exit noted", timeout=10)
        await crashing.stop()
        text = (tmp_path / "crash" / "app.log").read_text()
        assert "[corral] starting web: echo hello; exit 3" in text and "hello" in text
        assert "[corral] web exited with code 3; restarting in 0.5s" in text

        (tmp_path / "stubborn").mkdir()
        stubborn = AppRunner(_spec(tmp_path / "stubborn", "trap '' TERM; echo deaf; sleep 30"),
                             lambda: None)
        stubborn.start()
        await asyncio.to_thread(eventually, lambda: (tmp_path / "stubborn" / "app.log").read_text(),
                                lambda t: "deaf" in t.splitlines(),  # the shell's own line
                                what="SIGTERM ignored", timeout=10)
        await stubborn.stop()
        text = (tmp_path / "stubborn" / "app.log").read_text()
        assert "[corral] stopping web (SIGTERM)" in text
        assert "[corral] web still runs after 1s; killing it (SIGKILL)" in text
        assert "[corral] web stopped (was killed by signal 9)" in text

    asyncio.run(scenario())
