"""Profiles of the model's runs: `short` in `make test`, `long` with `make model`
(docs/model.md). `CORRAL_MODEL_PROFILE` chooses one; `CORRAL_MODEL_SEED` replays the seed a
failure printed."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, settings
from hypothesis import seed as with_seed
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test

from corral.domain import accounts
from tests.e2e.conftest import (  # noqa: F401 - fixtures
    control_plane,
    operator,
    password_hash,
    serve,
)

COMMON = {"deadline": None, "database": None, "print_blob": True,
          "suppress_health_check": list(HealthCheck)}
PROFILES = {
    # name: (sequences in this process, sequences through a real process, steps at most)
    "short": (5, 1, 30),
    "long": (1000, 150, 30),
}
PROFILE = os.environ.get("CORRAL_MODEL_PROFILE", "short")
BATCH = 25
"""Sequences per seed: a long run reports its progress after each batch, and a failure's seed
replays its batch."""


def run(machine: type[RuleBasedStateMachine], *, real_process: bool = False) -> None:
    """Run the machine under the profile, a batch of sequences per seed, each seed named by a
    failure so that it can be replayed (`CORRAL_MODEL_SEED`). `CORRAL_MODEL_MINUTES` ends a run
    early, after the batch that passes it; `CORRAL_MODEL_REPORT` names a file that gets a
    line after each batch (what a long run has done so far)."""
    in_process, through_process, steps = PROFILES[PROFILE]
    wanted = through_process if real_process else in_process
    replay = os.environ.get("CORRAL_MODEL_SEED")
    budget = float(os.environ.get("CORRAL_MODEL_MINUTES") or 0) * 60
    backend = machine.backend  # type: ignore[attr-defined]
    label = (f"{'real process' if real_process else 'in-process'}, "
             f"{'PostgreSQL' if backend.database_url.startswith('postgresql') else 'SQLite'}")
    started = time.monotonic()
    done = 0
    while done < wanted:
        size = min(BATCH, wanted - done)
        seed = int(replay) if replay else random.randrange(2**32)
        chosen = settings(max_examples=size, stateful_step_count=steps, **COMMON)
        # at least half the steps: left to itself, Hypothesis ends most sequences after a
        # step or two, which exercise nothing of what steps compose
        test: Callable[[], None] = get_state_machine_test(
            machine, settings=chosen, _min_steps=chosen.stateful_step_count // 2)
        try:
            with_seed(seed)(test)()
        except BaseException as exc:
            exc.add_note(f"replay with CORRAL_MODEL_SEED={seed} CORRAL_MODEL_PROFILE={PROFILE}")
            _report(f"{label}: FAILED with seed {seed}")
            raise
        done += size
        elapsed = time.monotonic() - started
        _report(f"{label}: {machine.sequences} sequences, {machine.steps} steps, 0 failures, "  # type: ignore[attr-defined]
                f"{elapsed:.0f} s")
        if replay or (budget and elapsed > budget):
            break
    outcomes = machine.outcomes  # type: ignore[attr-defined]
    print(f"model ({label}): {machine.sequences} sequences, {machine.steps} steps in "  # type: ignore[attr-defined]
          f"{time.monotonic() - started:.0f} s; "
          + ", ".join(f"{call} {status}: {n}" for (call, status), n in sorted(outcomes.items())))


def _report(line: str) -> None:
    path = os.environ.get("CORRAL_MODEL_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(f"{time.strftime('%H:%M:%S')} {line}\n")


@pytest.fixture
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process only: the hash's cost is held by the process runs and `bench security`."""
    cheapest = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    for profile in accounts.PASSWORD_HASHERS:  # whichever the settings name
        monkeypatch.setitem(accounts.PASSWORD_HASHERS, profile, cheapest)
    monkeypatch.setattr(accounts, "_hasher", cheapest)
    monkeypatch.setattr(accounts, "_dummy_hash", None)
    yield
