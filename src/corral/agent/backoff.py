"""How long an agent waits before it tries the control plane again."""

from __future__ import annotations

import random

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0


class Backoff:
    """Full-jitter exponential back-off: uniform(0, min(cap, base·2ⁿ)), so that a fleet that
    lost its control plane at once does not come back at once."""

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next(self) -> float:
        delay = random.uniform(self.base / 2, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
