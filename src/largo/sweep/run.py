"""Running a sweep: train each training cell (resumably), then sample and evaluate each sampling cell through
the one sample-then-evaluate pipeline (`largo.evaluation`), keeping every finished cell on disk."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from largo.checkpoint import latest_checkpoint, read_meta, resolve_checkpoint
from largo.config import RunConfig
from largo.errors import LargoError
from largo.evaluation import EvalSettings, Judge, make_judge, run_source, sample_and_evaluate
from largo.io import atomic_write_json
from largo.metrics.evaluate import write_result
from largo.runtime import resolve_device
from largo.sampling import LoadedModel, load_model
from largo.sweep.cells import (cell_key, cell_options, cell_settings, cell_status, find_reusable, nfe, read_cell,
                               sampling_cells)
from largo.sweep.spec import SWEEP_FORMAT, SWEEP_VERSION, SweepSpec, fail, train_cells
from largo.sweep.table import fmt, row_from_result, write_table
from largo.train import Trainer

Log = Callable[[str], Any]


@dataclasses.dataclass
class _Progress:
    """What the cells of one sweep share: counts, table rows, and the judges built so far (one per dataset)."""

    counts: dict = dataclasses.field(default_factory=lambda: {"computed": 0, "reused": 0, "skipped": 0, "trained": 0})
    rows: list[dict] = dataclasses.field(default_factory=list)
    judges: dict[tuple, Judge] = dataclasses.field(default_factory=dict)


def run_sweep(spec: SweepSpec, log: Log = print, progress: bool = False) -> dict:
    """Run (or finish) every cell; return {'computed', 'reused', 'skipped', 'trained', 'rows', 'out'}."""
    device = resolve_device(spec.device)
    spec.out.mkdir(parents=True, exist_ok=True)
    state = _Progress()
    if spec.train_grid:
        for tcell in train_cells(spec):
            ckpt, summary = _train_cell(spec, tcell, state.counts, log, progress)
            _sample_checkpoint(spec, ckpt, device, state, log, progress, train=(tcell, summary),
                               prefix=f"{tcell['name']}__")
            write_table(spec, state.rows, partial=True)
    else:
        for prefix, ckpt in checkpoint_groups(spec):
            _sample_checkpoint(spec, ckpt, device, state, log, progress, prefix=prefix)
    write_table(spec, state.rows)
    c = state.counts
    log(f"largo: sweep done: {c['computed']} computed, {c['reused']} reused, {c['skipped']} already done, "
        f"{c['trained']} trained → {spec.out / 'results.md'}")
    return {**c, "rows": state.rows, "out": str(spec.out)}


def checkpoint_groups(spec: SweepSpec) -> list[tuple[str, Path]]:
    """(cell-name prefix, checkpoint folder) for each checkpoint of a sampling sweep."""
    if not isinstance(spec.checkpoint, list):
        return [("", resolve_checkpoint(spec.checkpoint))]
    groups = [(f"step{read_meta(c).get('step', 0)}__", c) for c in map(resolve_checkpoint, spec.checkpoint)]
    prefixes = [p for p, _ in groups]
    if len(set(prefixes)) < len(prefixes):
        fail("the checkpoint list names two checkpoints of the same training step; cells are named by step")
    return groups


def plan(spec: SweepSpec) -> list[tuple[str, str]]:
    """(status, cell name) of every cell without running anything: done, reuse, stale, todo or todo (not trained)."""
    if spec.train_grid:
        groups = [(t["name"] + "__", latest_checkpoint(spec.out / "runs" / t["name"]), t["config"].sample)
                  for t in train_cells(spec)]  # a checkpoint is None until its setting is trained
    else:
        groups = [(prefix, ckpt, RunConfig.from_dict(read_meta(ckpt)["config"]).sample)
                  for prefix, ckpt in checkpoint_groups(spec)]
    out = []
    for prefix, ckpt, sample_defaults in groups:
        meta = read_meta(ckpt) if ckpt is not None else {}
        for c in sampling_cells(spec, sample_defaults):
            name = prefix + c["name"]
            out.append((cell_status(spec, ckpt, meta, c, name) if ckpt is not None else "todo (not trained)", name))
    return out


def _train_cell(spec: SweepSpec, tcell: dict, counts: dict, log: Log, progress: bool) -> tuple[Path, dict]:
    """Train one setting under OUT/runs/<cell>/, unless it finished before; resume one that was interrupted."""
    run_dir = spec.out / "runs" / tcell["name"]
    marker = run_dir / "sweep_train.json"
    key = cell_key({"config": tcell["config"].to_dict()})
    state = _read_json(marker) or {}
    ckpt = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    same = state.get("key") == key and ckpt is not None
    if same and state.get("done"):
        return ckpt, state["summary"]
    resume = same  # started with these settings and checkpointed: continue from the latest checkpoint
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # other settings, or a run that died before its first checkpoint
    atomic_write_json(marker, {"key": key, "settings": tcell["settings"], "done": False})
    log(f"largo: sweep: training {tcell['name']}" + (" (resuming)" if resume else ""))
    summary = Trainer(dataclasses.replace(tcell["config"]), run_dir, resume=resume, progress=progress).fit()
    atomic_write_json(marker, {"key": key, "settings": tcell["settings"], "done": True, "summary": summary})
    counts["trained"] += 1
    return Path(summary["checkpoint"]), summary


def _read_json(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) else None


def _eval_settings(spec: SweepSpec) -> EvalSettings:
    return EvalSettings(n=spec.n, seed=spec.seed, batch_size=spec.batch_size, ref_split=spec.ref_split,
                        ref_n=spec.ref_n, data_root=spec.data_root, classifier=spec.classifier,
                        inception_weights=spec.inception_weights, use_inception=spec.inception,
                        kid_subsets=spec.kid_subsets, device=spec.device)


def _judge(spec: SweepSpec, cfg: RunConfig, device: torch.device, judges: dict) -> Judge:
    data_root = cfg.data.data_root if spec.data_root is None else spec.data_root
    k = (cfg.data.dataset, cfg.data.resolution, data_root)
    if k not in judges:
        judges[k] = make_judge(cfg.data.dataset, cfg.data.resolution, _eval_settings(spec), device, data_root,
                               cfg.model.num_classes)
    return judges[k]


def _check_cells(cells: list[dict], cfg: RunConfig, ckpt: Path) -> None:
    """Every cell is checked against the checkpoint before the first one runs."""
    for c in cells:
        try:
            cell_options(c).check(cfg.diffusion.timesteps, cfg.model.num_classes, label=lambda name: f"grid {name}")
        except LargoError as e:
            fail(f"cell {c['name']}: {e}")
        if c["weights"] == "online" and not (Path(ckpt) / "model.safetensors").is_file():
            fail(f"grid weights 'online' but {ckpt} has no model.safetensors (released checkpoints ship the EMA "
                  f"weights only; use a run directory)")


def _sample_checkpoint(spec: SweepSpec, ckpt: Path, device: torch.device, state: _Progress, log: Log,
                       progress: bool, train: tuple[dict, dict] | None = None, prefix: str = "") -> None:
    """Run this checkpoint's cells (or take them from disk), appending one table row per cell."""
    meta = read_meta(ckpt)
    cfg = RunConfig.from_dict(meta["config"])
    cells = sampling_cells(spec, cfg.sample)
    _check_cells(cells, cfg, ckpt)
    models: dict[str, LoadedModel] = {}
    for c in cells:
        name = prefix + c["name"]
        path = spec.out / "cells" / f"{name}.json"
        key = cell_key(cell_settings(spec, ckpt, meta, c))
        old = read_cell(path)
        if old is not None and old["sweep"].get("key") == key:
            state.counts["skipped"] += 1
            state.rows.append(row_from_result(old))
            continue
        reused = find_reusable(spec, c["name"], name, key)
        if reused is not None:
            write_result(path, reused)
            state.counts["reused"] += 1
            state.rows.append(row_from_result(reused))
            log(f"largo: sweep: {name}: reused from {reused['sweep']['reused_from']}")
            continue
        if c["weights"] not in models:
            models[c["weights"]] = load_model(ckpt, device, weights=c["weights"])
        full = _run_cell(spec, models[c["weights"]], c, name, key, device, state, log, progress, train)
        write_result(path, full)
        state.counts["computed"] += 1
        row = row_from_result(full)
        state.rows.append(row)
        log(f"largo: sweep: {name}: acc {fmt(row['class_acc'])}  FD_cls {fmt(row['fd_cls'])}  "
            f"{row['s_per_img']:.4g} s/img  peak {row['peak_mem_mb']:.0f} MB")
        write_table(spec, state.rows, partial=True)


def _run_cell(spec: SweepSpec, model: LoadedModel, c: dict, name: str, key: str, device: torch.device,
              state: _Progress, log: Log, progress: bool, train: tuple[dict, dict] | None) -> dict:
    """Sample and evaluate one cell; its result JSON with the sweep's bookkeeping (timing, memory, settings)."""
    judge = _judge(spec, model.cfg, device, state.judges)
    options = cell_options(c)
    log(f"largo: sweep: {name} ({spec.n} images, nfe {nfe(c['sampler'], c['steps'])}) on {device}")
    run = sample_and_evaluate(model, options, judge, _eval_settings(spec), device, progress=progress, log=log)
    source = run_source(model, options, c["weights"], _eval_settings(spec))
    mem = run.memory
    sweep = {"format": SWEEP_FORMAT, "format_version": SWEEP_VERSION, "key": key,
             "settings": cell_settings(spec, model.checkpoint, model.meta, c), "cell": name,
             "sampling_cell": c["name"], "nfe": nfe(c["sampler"], c["steps"]), "device": str(device),
             "torch_threads": torch.get_num_threads(), "timing": run.timing,
             "memory": {"kind": mem.kind, "scope": mem.scope, "peak_mb": mem.peak, "start_mb": mem.start,
                        "delta_mb": mem.delta}}
    if train:
        tcell, summary = train
        sweep["train"] = {"cell": tcell["name"], "settings": tcell["settings"], "step": summary.get("step"),
                          "minutes": summary.get("minutes"), "stop_reason": summary.get("stop_reason")}
    return {"name": name, "source": source, "sweep": sweep, **run.result}
