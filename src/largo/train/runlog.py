"""What a training run writes as it goes: log.jsonl records, TensorBoard scalars, the progress bar."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm


def log_step(line: str) -> int | float:
    """A record's step; a line cut short by a crash counts as "after any checkpoint", so resume drops it."""
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, ValueError, TypeError):
        return math.inf


def write_log(f: Any, record: dict[str, Any]) -> None:
    if f is None:  # not rank 0
        return
    f.write(json.dumps(record) + "\n")
    f.flush()


def tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None  # tensorboard is optional; log.jsonl has the same numbers
    return SummaryWriter(str(run_dir / "tensorboard"))


def progress_bar(total: int | None, initial: int, enabled: bool) -> Any:
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                file=sys.stderr, mininterval=1.0)


class RunLog:
    """log.jsonl records, TensorBoard scalars and the progress bar of one run; only rank 0 writes.

    Steps are averaged over a window of `log_every` steps; `window_record` closes a window."""

    SCALARS = ("loss", "lr", "grad_norm", "images_per_s")

    EVAL_SCALARS = ("accuracy", "fd", "precision", "recall", "memorised", "nn_ratio", "seconds")

    def __init__(self, run_dir: Path, main: bool, progress: bool, total: int, step: int, deadline: float,
                 images_per_step: int, eval_every: int = 0):
        self.main, self.deadline, self.images_per_step = main, deadline, images_per_step
        self.total, self.eval_every, self.eval_seconds = total, eval_every, 0.0
        self.writer = tensorboard_writer(run_dir) if main else None
        self.path = run_dir / "log.jsonl"
        self.file = open(self.path, "a") if main else None
        # With a time budget the step count is not what stops the run, so the bar shows no step total (whose ETA
        # would mislead) and the postfix shows the minutes left instead.
        self.bar = progress_bar(total if deadline == math.inf else None, step, progress and main)
        self._open_window(step)

    def _open_window(self, step: int) -> None:
        self.loss_sum, self.n, self.t0, self.step0 = 0.0, 0, time.time(), step

    def event(self, record: dict[str, Any]) -> None:
        write_log(self.file, record)

    def good_step(self, loss: float) -> None:
        self.loss_sum += loss
        self.n += 1
        self.bar.update(1)

    def window_record(self, step: int, **fields: Any) -> dict[str, Any] | None:
        """Write the window's mean loss, throughput and `fields`; None when the window has no good step."""
        if not self.n:
            return None
        elapsed = max(time.time() - self.t0, 1e-9)
        record = {"step": step, **fields, "loss": self.loss_sum / self.n,
                  "images_per_s": (step - self.step0) * self.images_per_step / elapsed, "time": time.time()}
        left = {} if self.deadline == math.inf else {"min_left": f"{max(0.0, self.deadline - time.time()) / 60:.1f}"}
        if self.eval_every and self.deadline == math.inf:  # tqdm's own ETA knows nothing of the evaluations
            record["eta_min"] = round(self.eta_seconds(step, (step - self.step0) / elapsed) / 60, 2)
            left["eta_min"] = f"{record['eta_min']:.1f}"
        write_log(self.file, record)
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.0f}", **left)
        if self.writer:
            for k in self.SCALARS:
                if k in record:
                    self.writer.add_scalar(f"train/{k}", record[k], step)
        self._open_window(step)
        return record

    def eta_seconds(self, step: int, steps_per_s: float) -> float:
        """Seconds until the step count is reached: the steps left at the current rate plus the evaluations left at
        the last one's duration (a time budget's minutes left already include them)."""
        evals_left = self.total // self.eval_every - step // self.eval_every if self.eval_every else 0
        return (self.total - step) / max(steps_per_s, 1e-9) + evals_left * self.eval_seconds

    def evaluation(self, record: dict[str, Any]) -> None:
        """An in-training evaluation: log.jsonl, TensorBoard (eval/…) and the duration the ETA counts with."""
        self.eval_seconds = float(record.get("seconds", 0.0))
        self.t0 += self.eval_seconds  # the window's images/s (and the ETA's step rate) count training time only
        if self.file is None and self.main:  # the run's last evaluation comes after the stream is closed
            with open(self.path, "a") as f:
                write_log(f, record)
        else:
            write_log(self.file, record)
        if self.writer:
            for k in self.EVAL_SCALARS:
                if isinstance(record.get(k), (int, float)):
                    self.writer.add_scalar(f"eval/{k}", record[k], record["step"])

    def close_stream(self) -> None:
        """Close the bar and log.jsonl (TensorBoard stays open for the final sample grid)."""
        self.bar.close()
        if self.file:
            self.file.close()
            self.file = None

    def close(self) -> None:
        self.close_stream()
        if self.writer:
            self.writer.close()
