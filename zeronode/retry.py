"""How long to wait before trying again: capped exponential backoff, in one place.

    delay(attempt=3, first=0.5, cap=30)        -> 4.0   (0.5, 1, 2, 4, ... 30, 30)
    Backoff(cap=60).next()                     -> 1, 2, 4, ... seconds with up to 20% jitter
"""

from __future__ import annotations

import random


def delay(attempt: int, *, first: float = 1.0, factor: float = 2.0, cap: float) -> float:
    """The wait before try number `attempt` + 1: `first`, then `factor` times longer each time, at most `cap`."""
    return min(cap, first * factor ** max(attempt, 0))


class Backoff:
    """Successive waits for one thing that keeps failing; `reset()` once it succeeds.

    Each wait is shortened by up to `jitter` (a fraction), so that the nodes that
    failed together do not all retry at the same moment.
    """

    def __init__(self, cap: float, *, first: float = 1.0, factor: float = 2.0, jitter: float = 0.2):
        self.cap, self.first, self.factor, self.jitter = cap, first, factor, jitter
        self.failures = 0

    def next(self) -> float:
        wait = delay(self.failures, first=self.first, factor=self.factor, cap=self.cap)
        self.failures += 1
        return wait * random.uniform(1.0 - self.jitter, 1.0)

    def reset(self) -> None:
        self.failures = 0
