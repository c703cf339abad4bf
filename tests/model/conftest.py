"""Profiles of the model's runs: `short` in `make test`, `long` with `make model`
(docs/model.md). `CORRAL_MODEL_PROFILE` chooses one; `CORRAL_MODEL_SEED` replays the seed a
failure printed."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, settings
from hypothesis import seed as with_seed
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test

from corral.domain import accounts
from tests.e2e.conftest import control_plane, operator, serve  # noqa: F401 - fixtures

COMMON = {"deadline": None, "database": None, "print_blob": True,
          "suppress_health_check": list(HealthCheck)}
PROFILES = {
    # name: (sequences in this process, sequences through a real process, steps at most)
    "short": (5, 1, 30),
    "long": (1000, 150, 30),
}
PROFILE = os.environ.get("CORRAL_MODEL_PROFILE", "short")


def run(machine: type[RuleBasedStateMachine], *, real_process: bool = False) -> None:
    """Run the machine under the profile with a seed that a failure names, so that it can be
    replayed: `CORRAL_MODEL_SEED=N`."""
    in_process, through_process, steps = PROFILES[PROFILE]
    chosen = settings(max_examples=through_process if real_process else in_process,
                      stateful_step_count=steps, **COMMON)
    seed = int(os.environ.get("CORRAL_MODEL_SEED") or random.randrange(2**32))
    # at least half the steps: left to itself, Hypothesis ends most sequences after a step
    # or two, which exercise nothing of what steps compose
    test: Callable[[], None] = get_state_machine_test(
        machine, settings=chosen, _min_steps=chosen.stateful_step_count // 2)
    try:
        with_seed(seed)(test)()
    except BaseException as exc:
        exc.add_note(f"replay with CORRAL_MODEL_SEED={seed} CORRAL_MODEL_PROFILE={PROFILE}")
        raise
    outcomes = machine.outcomes  # type: ignore[attr-defined]
    print(f"model: {machine.sequences} sequences, {machine.steps} steps, seed {seed}; "  # type: ignore[attr-defined]
          + ", ".join(f"{call} {status}: {n}" for (call, status), n in sorted(outcomes.items())))


@pytest.fixture
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process only: the hash's cost is held by the process runs and `bench security`."""
    monkeypatch.setattr(accounts, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(accounts, "_dummy_hash", None)
    yield
