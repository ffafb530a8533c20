"""The learning rate along a run: a linear warm-up, then constant or a cosine decay to zero at the run's end.

Under a time budget (`max_minutes`) the end is where the budget runs out, not the step count (which the budget
may never reach): the horizon is re-estimated from the measured speed as the run goes, so a cosine decay ends
when the budget does. That makes the schedule of a budgeted run depend on the machine's speed, as its step count
already does; a run bounded by steps alone keeps a fixed, reproducible schedule."""

from __future__ import annotations

import math
import time

# Steps measured before the first estimate: the very first steps are slow (allocation, caches).
MIN_MEASURED_STEPS = 20


class LRSchedule:
    def __init__(self, lr: float, warmup: int, kind: str, total_steps: int) -> None:
        self.lr, self.warmup, self.kind, self.total_steps = lr, warmup, kind, total_steps
        self.horizon = total_steps  # the step where a cosine decay reaches zero
        self.deadline, self.t0, self.step0 = math.inf, 0.0, 0

    def lr_at(self, step: int) -> float:
        lr = self.lr * min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else self.lr
        if self.kind == "cosine":
            lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, self.horizon))))
        return lr

    def start_budget(self, step: int, deadline: float) -> None:
        """The run (or its resumed part) starts at `step` and must stop at `deadline` (time.time(); inf: none)."""
        self.deadline, self.t0, self.step0 = deadline, time.time(), step

    def observe(self, step: int) -> None:
        """After each step: re-estimate the horizon of a budgeted cosine run from its speed so far."""
        done = step - self.step0
        if self.kind != "cosine" or math.isinf(self.deadline) or done < MIN_MEASURED_STEPS:
            return
        now = time.time()
        steps_left = done / max(now - self.t0, 1e-9) * max(self.deadline - now, 0.0)
        self.horizon = min(self.total_steps, step + int(steps_left))
