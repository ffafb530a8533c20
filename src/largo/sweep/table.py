"""A sweep's table: one row per cell with every column, as OUT/results.csv and OUT/results.md."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from largo.io import atomic_write_text
from largo.sweep.cells import read_cell
from largo.sweep.spec import SweepSpec

BASE_COLUMNS = [
    "cell", "checkpoint_step", "weights", "sampler", "steps", "nfe", "cfg", "eta", "spacing", "clip_x0", "precision", "n",
    "seed", "class_acc", "fd_cls", "kid_cls", "precision_cls", "recall_cls", "cm_fd", "cm_kid", "var_ratio", "hist_tv",
    "fid", "kid_inception", "is",
    "s_per_img", "cpu_s_per_img", "gen_s", "peak_mem_mb", "mem_delta_mb", "mem_kind", "device", "eval_s",
]
TRAIN_COLUMNS = ["train_cell", "train_steps", "train_minutes"]


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def row_from_result(r: dict) -> dict:
    s, src = r["sweep"], r["source"]
    spaces = r.get("feature_spaces", {})
    cls = next((v for k, v in spaces.items() if k.startswith("classifier")), {})
    inc = next((v for k, v in spaces.items() if k.startswith("inception")), {})
    vg = r.get("variance_gap", {})
    row = {
        "cell": r["name"], "checkpoint_step": src.get("step"), "weights": src["weights"], "sampler": src["sampler"],
        "steps": src["steps"], "nfe": s["nfe"], "cfg": src["cfg"], "eta": src["eta"], "spacing": src["spacing"],
        "clip_x0": src.get("clip_x0", False),
        "precision": src.get("precision", src.get("sample_precision", "auto")),  # older cells: sample_precision
        "n": src["n"], "seed": src["seed"],
        "class_acc": _get(cls, "accuracy", "overall"), "fd_cls": _get(cls, "fd", "value"),
        "kid_cls": _get(cls, "kid", "mean"), "precision_cls": _get(cls, "precision_recall", "precision"),
        "recall_cls": _get(cls, "precision_recall", "recall"), "cm_fd": _get(cls, "class_matched", "mean", "fd"),
        "cm_kid": _get(cls, "class_matched", "mean", "kid"), "var_ratio": vg.get("var_ratio_mean"),
        "hist_tv": (sum(vg["histogram_l1"]) / len(vg["histogram_l1"])) if vg.get("histogram_l1") else None,
        "fid": _get(inc, "fd", "value"), "kid_inception": _get(inc, "kid", "mean"),
        "is": _get(inc, "inception_score", "mean"),
        "s_per_img": s["timing"]["s_per_image"], "cpu_s_per_img": s["timing"]["cpu_s_per_image"],
        "gen_s": s["timing"]["generate_s"], "peak_mem_mb": s["memory"]["peak_mb"],
        "mem_delta_mb": s["memory"]["delta_mb"], "mem_kind": s["memory"]["kind"], "device": s["device"],
        "eval_s": s["timing"]["eval_s"],
    }
    t = s.get("train")
    if t:
        row.update({"train_cell": t["cell"], "train_steps": t["step"], "train_minutes": t["minutes"],
                    **{f"train.{k}": v for k, v in t["settings"].items()}})
    return row


def columns(spec: SweepSpec) -> list[str]:
    if not spec.train_grid:
        return list(BASE_COLUMNS)
    return TRAIN_COLUMNS + [f"train.{k}" for k in spec.train_grid] + BASE_COLUMNS


def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        if v == 0:
            return "0"
        return f"{v:.4g}" if abs(v) >= 1e-3 else f"{v:.3e}"
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    return str(v)


def write_table(spec: SweepSpec, rows: list[dict], partial: bool = False) -> None:
    """OUT/results.csv (full precision) and OUT/results.md (4 significant digits), atomically."""
    cols = columns(spec)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: "" if r.get(c) is None else r.get(c) for c in cols})
    atomic_write_text(spec.out / "results.csv", buf.getvalue())
    head = [f"# {spec.name or 'largo sweep'}" + (" (in progress)" if partial else ""), ""]
    if spec.description:
        head += [spec.description, ""]
    src = f"checkpoint `{spec.checkpoint}`" if spec.checkpoint else f"training grid {json.dumps(spec.train_grid)}"
    head += [f"{src}; N = {spec.n} images per cell (class i mod K, seed {spec.seed}+i, identical in every cell); "
             f"metrics against the {spec.ref_split} split" + (f" (subset of {spec.ref_n})" if spec.ref_n else "")
             + f"; config `{spec.source}`.", ""]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    atomic_write_text(spec.out / "results.md", "\n".join(head + lines) + "\n")


def read_rows(out: str | Path) -> list[dict]:
    """The rows of a finished sweep folder's cells (for reports and benchmarks)."""
    rows = []
    for p in sorted((Path(out) / "cells").glob("*.json")):
        r = read_cell(p)
        if r is not None:
            rows.append(row_from_result(r))
    return rows
