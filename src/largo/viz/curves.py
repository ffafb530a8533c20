"""Training curves from a run's log.jsonl: loss (raw and smoothed) and learning rate."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PIL import Image

from largo.draw.plot import BLUE, GREEN, LIGHT_BLUE, Panel, Series, plot
from largo.errors import LargoError

CURVES_SIZE = (1100, 400)  # two 550×400 panels


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The loss records of RUN_DIR/log.jsonl, one per step, sorted by step. Lines with an "event" key (skipped
    steps) and lines that are not JSON (a run still writing its last line) are left out; a later record for the
    same step (a resumed run) replaces an earlier one."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise LargoError(f"{run_dir} has no training log (log.jsonl); is it a run directory that has trained?")
    records: dict[int, dict[str, Any]] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or "event" in rec or not isinstance(rec.get("step"), int):
            continue
        if isinstance(rec.get("loss"), (int, float)):
            records[rec["step"]] = rec
    if not records:
        raise LargoError(f"{path} has no loss records yet (the first is written after log_every steps)")
    return [records[k] for k in sorted(records)]


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing); non-finite values are skipped."""
    if not 0 <= weight < 1:
        raise LargoError(f"smoothing weight must be in [0, 1), got {weight}")
    out, avg, n = [], 0.0, 0
    for v in values:
        if math.isfinite(v):
            avg = weight * avg + (1 - weight) * v
            n += 1
        out.append(avg / (1 - weight ** n) if n else math.nan)
    return out


def curves_image(run_dir: str | Path, smoothing: float = 0.9) -> Image.Image:
    """Two panels, CURVES_SIZE pixels: loss (raw, smoothed; log scale) and learning rate, against step."""
    recs = read_log(run_dir)
    steps = [r["step"] for r in recs]
    loss = [float(r["loss"]) for r in recs]
    lr = [float(r["lr"]) if isinstance(r.get("lr"), (int, float)) else math.nan for r in recs]
    finite = [v for v in loss if math.isfinite(v)]
    notes = [f"last {finite[-1]:.4g} · min {min(finite):.4g}"] if finite else []
    loss_panel = Panel("training loss", [
        Series(steps, loss, color=LIGHT_BLUE, label="raw", width=1.2),
        Series(steps, smooth(loss, smoothing), color=BLUE, label=f"smoothed ({smoothing:g})", width=2.0),
    ], xlabel="step", ylabel="loss", logy=all(v > 0 for v in finite), notes=notes)
    lr_panel = Panel("learning rate", [Series(steps, lr, color=GREEN, width=2.0)], xlabel="step", ylabel="lr",
                     y_from_zero=True)
    width, height = CURVES_SIZE
    return plot([loss_panel, lr_panel], panel_size=(width // 2, height))


# -- in-training evaluation (`--eval-every N`) -------------------------------------------------------------------
EVAL_PANELS = (("accuracy", "classifier accuracy of samples", False), ("fd", "Fréchet distance (classifier)", False),
               ("recall", "recall (k = 3)", True), ("memorised", "memorised (share < held-out 1st pct.)", True))


def read_evals(run_dir: str | Path) -> list[dict[str, Any]]:
    """The in-training evaluation records of RUN_DIR/log.jsonl (`"event": "eval"`), one per step, by step."""
    path = Path(run_dir) / "log.jsonl"
    records: dict[int, dict[str, Any]] = {}
    for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("event") == "eval" and isinstance(rec.get("step"), int):
            records[rec["step"]] = rec
    return [records[k] for k in sorted(records)]


def eval_curves_image(run_dir: str | Path, x: str = "step") -> Image.Image | None:
    """Accuracy, FD, recall and memorisation of the in-training evaluations against `x` ("step" or "minutes",
    the run's wall-clock minutes, evaluations included); None when the run has none."""
    recs = read_evals(run_dir)
    if not recs:
        return None
    xs = [float(r.get(x, r["step"])) for r in recs]
    panels = []
    for key, title, from_zero in EVAL_PANELS:
        ys = [float(r[key]) if isinstance(r.get(key), (int, float)) else math.nan for r in recs]
        if all(math.isnan(v) for v in ys):
            continue
        best = [f"last {ys[-1]:.4g}"] if math.isfinite(ys[-1]) else []
        panels.append(Panel(title, [Series(xs, ys, color=BLUE, width=2.0)], xlabel=x, ylabel=key,
                            y_from_zero=from_zero, notes=best))
    width, height = CURVES_SIZE
    return plot(panels, panel_size=(width // 2, height)) if panels else None
