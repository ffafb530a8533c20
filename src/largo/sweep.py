"""`largo sweep`: a grid of sampling (and optionally training) settings, each cell generated and evaluated alike.

A sweep config is one JSON object::

    {"checkpoint": "runs/demo",            # run dir, checkpoint folder or released name (or "train_grid", below)
     "n": 1000, "seed": 0,                 # image i of every cell: class i % K, seed SEED + i
     "grid": {"sampler": ["ddim", "dpmpp2m"], "steps": [10, 20], "cfg": [3], "eta": [0],
              "spacing": ["trailing"], "weights": ["ema", "online"], "clip_x0": [true],
              "sample_precision": ["auto"]},
     "out": "runs/sweeps/mine"}

`grid` is a dict (its Cartesian product) or a list of such dicts (the union of their products, duplicates
dropped), so "DDPM 1000 vs DDIM 250/50/20" is `[{"sampler": ["ddpm"], "steps": [1000]}, {"sampler": ["ddim"],
"steps": [250, 50, 20]}]`. A key left out takes the checkpoint's `sample` config. A list of checkpoints (e.g. one run's
checkpoints across training) runs the grid on each; its cells are named `step<N>__<cell>`. `eta` only changes DDIM, so the
other samplers' cells are recorded with eta 0 (and not repeated).

Training-setting sweeps replace `checkpoint` with `train_grid` (any config field → list of values),
`base_config` (a preset name, a config.json path, or {"preset"/"config": …, field: value, …}) and `train`
(train-section overrides, e.g. {"steps": 2000}); every setting is trained as its own run under OUT/runs/<cell>/
and then evaluated on the sampling grid. A setting that finished is not retrained (OUT/runs/<cell>/sweep_train.json);
one that was interrupted resumes from its latest checkpoint (a `max_minutes` budget then starts again).

Per cell: generation wall time per image (and process CPU time), peak memory during generation (CUDA:
`torch.cuda.max_memory_allocated`; CPU: the process's peak RSS, `resource.getrusage`, with the peak reset before
the cell through /proc/self/clear_refs where Linux allows it), then every metric of `largo eval` (domain
classifier: accuracy, FD/KID, precision/recall, class-matched FD/KID; pixel variance gap; Inception FID/KID/IS
only when its weights are on disk). Each cell's eval JSON is written atomically to OUT/cells/<cell>.json and a
cell whose JSON exists with the same settings key is not recomputed; OUT/results.csv and OUT/results.md hold
one row per cell with every column. Relative paths are relative to the working directory.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from largo.config import PRESETS, SAMPLE_PRECISIONS, SAMPLERS, SECTIONS, SPACINGS, RunConfig, _coerce, _field_types, preset_config
from largo.errors import LargoError

SWEEP_FORMAT = "largo-sweep-cell"
SWEEP_VERSION = 1
GRID_KEYS = ("sampler", "steps", "cfg", "eta", "spacing", "weights", "clip_x0", "sample_precision")
WEIGHTS = ("ema", "online")
TOP_KEYS = {
    "checkpoint": "run dir, checkpoint folder or released checkpoint name, or a list of them (cells named stepN__…)",
    "n": "images per cell (default 1000)",
    "seed": "image i uses seed SEED+i in every cell (default 0)",
    "grid": "sampling grid: {key: [values]} or a list of such objects",
    "out": "output folder",
    "train_grid": "training settings: {config field: [values]}",
    "base_config": "train_grid: preset name, config.json path or {preset|config, field: value}",
    "train": "train_grid: train-section overrides, e.g. {steps, max_minutes}",
    "batch_size": "sampling/feature batch size (default 64)",
    "device": "auto | cpu | cuda | cuda:N (default auto)",
    "ref_split": "real split for the metrics (default test)",
    "ref_n": "seeded subset of the reference split (default 0 = all)",
    "data_root": "dataset root (default: the checkpoint's)",
    "classifier": "domain classifier folder (default: the shipped one)",
    "inception_weights": "Inception weights path (default: torch hub cache)",
    "inception": "false: never compute FID/KID/IS (default true: when the weights exist)",
    "kid_subsets": "KID subsets (default 100)",
    "reuse": "other sweep folders whose finished cells (same settings key) are copied instead of recomputed",
    "name": "a title for the results table",
    "description": "free text, copied into results.md",
}

# Table columns, in order; every column is written for every row ("" where it does not apply).
BASE_COLUMNS = [
    "cell", "checkpoint_step", "weights", "sampler", "steps", "nfe", "cfg", "eta", "spacing", "clip_x0", "sample_precision", "n",
    "seed", "class_acc", "fd_cls", "kid_cls", "precision", "recall", "cm_fd", "cm_kid", "var_ratio", "hist_tv",
    "fid", "kid_inception", "is",
    "s_per_img", "cpu_s_per_img", "gen_s", "peak_mem_mb", "mem_delta_mb", "mem_kind", "device", "eval_s",
]
TRAIN_COLUMNS = ["train_cell", "train_steps", "train_minutes"]


# -- the config ----------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    out: Path
    grid: list[dict[str, list]]
    checkpoint: str | list[str] | None = None  # a list: each checkpoint gets the whole grid (e.g. across training)
    n: int = 1000
    seed: int = 0
    train_grid: dict[str, list] = field(default_factory=dict)
    base_config: Any = None
    train: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    device: str = "auto"
    ref_split: str = "test"
    ref_n: int = 0
    data_root: str | None = None
    classifier: str | None = None
    inception_weights: str | None = None
    inception: bool = True
    kid_subsets: int = 100
    reuse: list[str] = field(default_factory=list)
    name: str = ""
    description: str = ""
    source: str = ""  # the config file


def _fail(msg: str) -> None:
    raise LargoError(f"sweep config: {msg}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_grid_value(key: str, v: Any) -> Any:
    if key == "sampler":
        if v not in SAMPLERS:
            _fail(f"unknown sampler {v!r} in grid; valid: {', '.join(SAMPLERS)}")
    elif key == "steps":
        if not _is_int(v) or v < 1:
            _fail(f"grid steps must be integers >= 1, got {v!r}")
    elif key in ("cfg", "eta"):
        if not _is_num(v) or v < 0:
            _fail(f"grid {key} must be numbers >= 0, got {v!r}")
        v = float(v)
        if key == "eta" and v > 1:
            _fail(f"grid eta must be in [0, 1], got {v!r}")
    elif key == "spacing":
        if v not in SPACINGS:
            _fail(f"unknown spacing {v!r} in grid; valid: {', '.join(SPACINGS)}")
    elif key == "weights":
        if v not in WEIGHTS:
            _fail(f"unknown weights {v!r} in grid; valid: ema, online")
    elif key == "clip_x0":
        if not isinstance(v, bool):
            _fail(f"grid clip_x0 must be true or false, got {v!r}")
    elif key == "sample_precision":
        if v not in SAMPLE_PRECISIONS:
            _fail(f"unknown sample_precision {v!r} in grid; valid: {', '.join(SAMPLE_PRECISIONS)}")
    return v


def _parse_grid(grid: Any) -> list[dict[str, list]]:
    parts = grid if isinstance(grid, list) else [grid]
    if not parts:
        _fail("grid is an empty list")
    out = []
    for part in parts:
        if not isinstance(part, dict):
            _fail(f"grid must be an object {{key: [values]}} or a list of them, got {part!r}")
        unknown = set(part) - set(GRID_KEYS)
        if unknown:
            _fail(f"unknown grid key(s) {sorted(unknown)}; valid: {', '.join(GRID_KEYS)}")
        clean = {}
        for key in GRID_KEYS:
            if key not in part:
                continue
            values = part[key] if isinstance(part[key], list) else [part[key]]
            if not values:
                _fail(f"grid {key} is an empty list")
            clean[key] = [_check_grid_value(key, v) for v in values]
        out.append(clean)
    return out


def _field_section() -> dict[str, tuple[str, Any]]:
    return {name: (section, typ) for section, cls in SECTIONS.items() for name, typ in _field_types(cls).items()}


def _flat_overrides(d: dict, where: str, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    """{field: value} checked against the config's field types (flat names, as the CLI flags)."""
    fields = _field_section()
    out = {}
    for k, v in d.items():
        if k not in fields or (sections and fields[k][0] not in sections):
            valid = sorted(n for n, (s, _) in fields.items() if not sections or s in sections)
            _fail(f"unknown {where} field {k!r}; valid: {', '.join(valid)}")
        out[k] = _coerce(k, v, fields[k][1])
    return out


def _apply(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    fields = _field_section()
    cfg = dataclasses.replace(cfg)
    for k, v in overrides.items():
        section = fields[k][0]
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{k: v}))
    return cfg


def load_spec(path: str | Path, **overrides: Any) -> SweepSpec:
    """Read and check a sweep config; `overrides` (checkpoint, out, n, device) win over the file's values."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LargoError(f"sweep config not found: {path}") from None
    except OSError as e:
        raise LargoError(f"cannot read sweep config {path}: {e.strerror or e}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise LargoError(f"sweep config {path} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        _fail("expected a JSON object at the top level")
    d = {**d, **{k: v for k, v in overrides.items() if v is not None}}
    return spec_from_dict(d, source=str(path))


def spec_from_dict(d: dict, source: str = "") -> SweepSpec:
    unknown = set(d) - set(TOP_KEYS)
    if unknown:
        _fail(f"unknown key(s) {sorted(unknown)}; valid: {', '.join(TOP_KEYS)}")
    if "out" not in d or not isinstance(d["out"], str) or not d["out"]:
        _fail('"out" (the output folder) is required')
    has_ckpt, has_train = d.get("checkpoint") is not None, d.get("train_grid") is not None
    if has_ckpt == has_train:
        _fail('give exactly one of "checkpoint" (sampling sweep) or "train_grid" (training sweep)')
    if has_ckpt and not (isinstance(d["checkpoint"], str) or (
            isinstance(d["checkpoint"], list) and d["checkpoint"] and all(isinstance(c, str) for c in d["checkpoint"]))):
        _fail('"checkpoint" must be a path or a released checkpoint name, or a list of them')
    n, seed = d.get("n", 1000), d.get("seed", 0)
    if not _is_int(n) or n < 2:
        _fail(f'"n" must be an integer >= 2, got {n!r}')
    if not _is_int(seed) or seed < 0:
        _fail(f'"seed" must be an integer >= 0, got {seed!r}')
    spec = SweepSpec(out=Path(d["out"]), grid=_parse_grid(d.get("grid", {})), checkpoint=d.get("checkpoint"),
                     n=n, seed=seed, source=source)
    for key, check, msg in (("batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
                            ("ref_n", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
                            ("kid_subsets", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
                            ("ref_split", lambda v: v in ("train", "test", "all"), "train, test or all"),
                            ("device", lambda v: isinstance(v, str) and v, "a device name"),
                            ("inception", lambda v: isinstance(v, bool), "true or false"),
                            ("data_root", lambda v: isinstance(v, str), "a path"),
                            ("classifier", lambda v: isinstance(v, str), "a path"),
                            ("inception_weights", lambda v: isinstance(v, str), "a path"),
                            ("name", lambda v: isinstance(v, str), "a string"),
                            ("description", lambda v: isinstance(v, str), "a string"),
                            ("reuse", lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v),
                             "a list of folders")):
        if key in d:
            if not check(d[key]):
                _fail(f'"{key}" must be {msg}, got {d[key]!r}')
            setattr(spec, key, d[key])
    if has_train:
        tg = d["train_grid"]
        if not isinstance(tg, dict) or not tg:
            _fail('"train_grid" must be a non-empty object {config field: [values]}')
        lists = {k: (v if isinstance(v, list) else [v]) for k, v in tg.items()}
        for k, v in lists.items():
            if not v:
                _fail(f"train_grid {k} is an empty list")
            for value in v:
                _flat_overrides({k: value}, "train_grid")
        spec.train_grid = lists
        spec.base_config = d.get("base_config", "demo")
        train = d.get("train", {})
        if not isinstance(train, dict):
            _fail('"train" must be an object of train-section fields, e.g. {"steps": 2000}')
        spec.train = _flat_overrides(train, "train", ("train",))
        for cell in train_cells(spec):  # every training setting must be a valid config before anything runs
            cell["config"].validate()
    else:
        for key in ("base_config", "train"):
            if key in d:
                _fail(f'"{key}" only applies with "train_grid"')
    return spec


def base_run_config(base: Any) -> RunConfig:
    if isinstance(base, str):
        if base in PRESETS:
            return preset_config(base)
        if Path(base).is_file():
            return RunConfig.load(base)
        _fail(f"base_config {base!r} is neither a preset ({', '.join(PRESETS)}) nor a config.json file")
    if not isinstance(base, dict):
        _fail("base_config must be a preset name, a config.json path or an object")
    base = dict(base)
    preset, path = base.pop("preset", None), base.pop("config", None)
    if preset is not None and path is not None:
        _fail('base_config takes "preset" or "config", not both')
    cfg = base_run_config(preset) if preset else (RunConfig.load(path) if path else RunConfig())
    return _apply(cfg, _flat_overrides(base, "base_config"))


# -- cells ---------------------------------------------------------------------------------------------
def _num(x: float) -> str:
    return f"{x:g}".replace("-", "m")


def nfe(sampler: str, steps: int) -> int:
    """Network evaluations per image (a guided evaluation of the 2B batch counts once)."""
    if sampler == "heun":
        from largo.diffusion.samplers import heun_intervals

        return 2 * heun_intervals(steps) - 1
    return steps


def sampling_cells(spec: SweepSpec, defaults: Any) -> list[dict]:
    """The grid's cells with unset keys taken from `defaults` (a SampleConfig); de-duplicated, in grid order."""
    base = {"sampler": defaults.sampler, "steps": defaults.sample_steps, "cfg": float(defaults.cfg),
            "eta": float(defaults.eta), "spacing": defaults.spacing, "weights": "ema",
            "clip_x0": bool(defaults.clip_x0), "sample_precision": defaults.sample_precision}
    cells, seen = [], set()
    for part in spec.grid:
        keys = list(part)
        for combo in itertools.product(*(part[k] for k in keys)):
            c = {**base, **dict(zip(keys, combo))}
            if c["sampler"] != "ddim":
                c["eta"] = 0.0  # only DDIM reads eta
            c["name"] = (f"{c['sampler']}-{c['steps']}-cfg{_num(c['cfg'])}-eta{_num(c['eta'])}-{c['spacing']}-"
                         f"{c['weights']}" + ("-clip" if c["clip_x0"] else "")
                         + ("" if c["sample_precision"] == "auto" else f"-{c['sample_precision']}"))
            if c["name"] not in seen:
                seen.add(c["name"])
                cells.append(c)
    return cells


def _value_name(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    if isinstance(v, float):
        return _num(v)
    return str(v).replace("/", "_").replace(":", "_")


def train_cells(spec: SweepSpec) -> list[dict]:
    base = _apply(base_run_config(spec.base_config), spec.train)
    if spec.device != "auto":
        base = _apply(base, {"device": spec.device})
    keys = list(spec.train_grid)
    cells = []
    for combo in itertools.product(*(spec.train_grid[k] for k in keys)):
        overrides = _flat_overrides(dict(zip(keys, combo)), "train_grid")
        name = "__".join(f"{k}-{_value_name(v)}" for k, v in overrides.items())
        cells.append({"name": name, "settings": overrides, "config": _apply(base, overrides)})
    return cells


def cell_settings(spec: SweepSpec, ckpt: Path, meta: dict, cell: dict) -> dict:
    """Everything a cell's numbers depend on; a finished cell is reused only when all of it matches."""
    return {"checkpoint": str(Path(ckpt).resolve()), "step": meta.get("step"), "n": spec.n, "seed": spec.seed,
            "ref_split": spec.ref_split, "ref_n": spec.ref_n, "data_root": spec.data_root,
            "classifier": spec.classifier, "inception": spec.inception, "kid_subsets": spec.kid_subsets,
            **{k: cell[k] for k in GRID_KEYS}}


def cell_status(spec: SweepSpec, ckpt: Path, meta: dict, cell: dict, name: str) -> str:
    """'done' (its JSON matches), 'reuse' (a `reuse` folder has it), 'stale' (a JSON from other settings: will be
    recomputed) or 'todo'."""
    key = cell_key(cell_settings(spec, ckpt, meta, cell))
    old = _read_cell(spec.out / "cells" / f"{name}.json")
    if old is not None and old["sweep"].get("key") == key:
        return "done"
    if _find_reusable(spec, cell["name"], name, key) is not None:
        return "reuse"
    return "todo" if old is None else "stale"


def cell_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- measuring -----------------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory of one phase: CUDA allocator peak, or the process's peak RSS (reset first where Linux allows
    it, else the process-lifetime peak: `scope` says which)."""

    def __init__(self, device: Any):
        self.cuda = getattr(device, "type", str(device)) == "cuda"
        self.device = device

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            return float("nan")

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device) / 2**20
            self.scope = "cuda max_memory_allocated (this cell)"
            return self
        self.start = self.rss_mb()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS ("hiwater") to the current RSS
            self.scope = "peak RSS (this cell)"
        except OSError:
            self.scope = "peak RSS (process lifetime)"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        self.delta = self.peak - self.start

    @property
    def kind(self) -> str:
        return "cuda" if self.cuda else "rss"


# -- running -------------------------------------------------------------------------------------------
@dataclass
class _Context:
    """What a checkpoint's cells share: the reference set and the feature spaces (built once)."""

    ref: Any
    spaces: list
    skipped: list


def _write_json(path: Path, obj: dict) -> None:
    from largo.metrics.evaluate import write_result

    write_result(path, obj)


def _read_cell(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) and d.get("sweep", {}).get("format") == SWEEP_FORMAT else None


def run_sweep(spec: SweepSpec, log: Callable[[str], Any] = print, progress: bool = False) -> dict:
    """Run (or finish) every cell; return {'computed', 'reused', 'skipped', 'trained', 'rows', 'out'}."""
    from largo.cli.classifier import resolve_device

    device = resolve_device(spec.device)
    spec.out.mkdir(parents=True, exist_ok=True)
    counts = {"computed": 0, "reused": 0, "skipped": 0, "trained": 0}
    rows: list[dict] = []
    contexts: dict[tuple, _Context] = {}
    if spec.train_grid:
        for tcell in train_cells(spec):
            ckpt, summary = _train_cell(spec, tcell, counts, log, progress)
            _sample_checkpoint(spec, ckpt, device, contexts, counts, rows, log, progress, train=(tcell, summary),
                               prefix=f"{tcell['name']}__")
            write_table(spec, rows, partial=True)
    else:
        for prefix, ckpt in checkpoint_groups(spec):
            _sample_checkpoint(spec, ckpt, device, contexts, counts, rows, log, progress, prefix=prefix)
    write_table(spec, rows)
    log(f"largo: sweep done: {counts['computed']} computed, {counts['reused']} reused, {counts['skipped']} "
        f"already done, {counts['trained']} trained → {spec.out / 'results.md'}")
    return {**counts, "rows": rows, "out": str(spec.out)}


def checkpoint_groups(spec: SweepSpec) -> list[tuple[str, Path]]:
    """(cell-name prefix, checkpoint folder) for each checkpoint of a sampling sweep."""
    from largo.train.checkpoint import read_meta, resolve_checkpoint

    if not isinstance(spec.checkpoint, list):
        return [("", resolve_checkpoint(spec.checkpoint))]
    groups = [(f"step{read_meta(c).get('step', 0)}__", c) for c in map(resolve_checkpoint, spec.checkpoint)]
    prefixes = [p for p, _ in groups]
    if len(set(prefixes)) < len(prefixes):
        _fail("the checkpoint list names two checkpoints of the same training step; cells are named by step")
    return groups


def _train_cell(spec: SweepSpec, tcell: dict, counts: dict, log, progress: bool) -> tuple[Path, dict]:
    from largo.train.checkpoint import latest_checkpoint
    from largo.train.trainer import Trainer

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
    from largo.io import atomic_write_json

    atomic_write_json(marker, {"key": key, "settings": tcell["settings"], "done": False})
    log(f"largo: sweep: training {tcell['name']}" + (" (resuming)" if resume else ""))
    trainer = Trainer(dataclasses.replace(tcell["config"]), run_dir, resume=resume, progress=progress)
    summary = trainer.fit()
    atomic_write_json(marker, {"key": key, "settings": tcell["settings"], "done": True, "summary": summary})
    counts["trained"] += 1
    return Path(summary["checkpoint"]), summary


def _read_json(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) else None


def _context(spec: SweepSpec, cfg: RunConfig, device, contexts: dict) -> _Context:
    from largo.metrics.evaluate import build_feature_spaces, load_reference

    data_root = cfg.data.data_root if spec.data_root is None else spec.data_root
    k = (cfg.data.dataset, cfg.data.resolution, data_root)
    if k not in contexts:
        ref = load_reference(cfg.data.dataset, spec.ref_split, cfg.data.resolution, data_root, spec.ref_n,
                             spec.seed)
        if cfg.model.num_classes and cfg.model.num_classes != len(ref.class_names):
            raise LargoError(f"the checkpoint has {cfg.model.num_classes} classes but {cfg.data.dataset} has "
                             f"{len(ref.class_names)}")
        skipped: list[dict] = []
        spaces = build_feature_spaces(ref, spec.classifier, spec.inception_weights, True, spec.inception,
                                      str(device), skipped)
        contexts[k] = _Context(ref, spaces, skipped)
    return contexts[k]


def _sample_checkpoint(spec: SweepSpec, ckpt: Path, device, contexts: dict, counts: dict, rows: list[dict], log,
                       progress: bool, train: tuple[dict, dict] | None = None, prefix: str = "") -> None:
    """Run this checkpoint's cells, appending one row per cell to `rows`."""
    import torch

    from largo.metrics.evaluate import EvalOptions, evaluate
    from largo.train.checkpoint import load_for_sampling, read_meta

    meta = read_meta(ckpt)
    cfg = RunConfig.from_dict(meta["config"])
    cells = sampling_cells(spec, cfg.sample)
    for c in cells:  # every cell is checked before the first one runs
        if c["steps"] > cfg.diffusion.timesteps:
            _fail(f"grid steps {c['steps']} > the checkpoint's {cfg.diffusion.timesteps} timesteps")
        if cfg.model.num_classes == 0 and c["cfg"] != 1:
            _fail("the checkpoint is unconditional: guidance needs cfg 1")
        if c["weights"] == "online" and not (Path(ckpt) / "model.safetensors").is_file():
            _fail(f"grid weights 'online' but {ckpt} has no model.safetensors (released checkpoints ship the EMA "
                  f"weights only; use a run directory)")
    nets: dict[str, Any] = {}
    ctx: _Context | None = None
    for c in cells:
        name = prefix + c["name"]
        path = spec.out / "cells" / f"{name}.json"
        settings = cell_settings(spec, ckpt, meta, c)
        key = cell_key(settings)
        old = _read_cell(path)
        if old is not None and old["sweep"].get("key") == key:
            counts["skipped"] += 1
            rows.append(row_from_result(old))
            continue
        reused = _find_reusable(spec, c["name"], name, key)
        if reused is not None:
            _write_json(path, reused)
            counts["reused"] += 1
            rows.append(row_from_result(reused))
            log(f"largo: sweep: {name}: reused from {reused['sweep']['reused_from']}")
            continue
        if c["weights"] not in nets:
            nets[c["weights"]] = load_for_sampling(ckpt, device, weights=c["weights"])[0]
        ctx = ctx or _context(spec, cfg, device, contexts)
        k = cfg.model.num_classes
        labels = torch.arange(spec.n) % k if k else torch.zeros(spec.n, dtype=torch.long)
        seeds = [spec.seed + i for i in range(spec.n)]
        log(f"largo: sweep: {name} ({spec.n} images, nfe {nfe(c['sampler'], c['steps'])}) on {device}")
        from largo.generate import generate_images

        with PeakMemory(device) as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            images = generate_images(nets[c["weights"]], cfg, labels, seeds, sampler=c["sampler"], steps=c["steps"],
                                     eta=c["eta"], cfg_scale=c["cfg"], spacing=c["spacing"], clip_x0=c["clip_x0"],
                                     precision=c["sample_precision"],
                                     batch_size=spec.batch_size, device=device, progress=progress)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            gen_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        opts = EvalOptions(kid_subsets=spec.kid_subsets, batch_size=spec.batch_size, seed=spec.seed,
                           skipped=list(ctx.skipped))
        t1 = time.perf_counter()
        result = evaluate(images, labels if k else None, ctx.ref, ctx.spaces, opts, log=log)
        eval_s = time.perf_counter() - t1
        source = {"kind": "run", "checkpoint": str(ckpt), "step": meta.get("step"), "weights": c["weights"],
                  "sampler": c["sampler"], "steps": c["steps"], "cfg": c["cfg"], "eta": c["eta"],
                  "spacing": c["spacing"], "clip_x0": c["clip_x0"],
                  "sample_precision": c["sample_precision"], "seed": spec.seed, "n": spec.n, "batch_size": spec.batch_size,
                  "classes": "cycled 0..K-1" if k else "unconditional"}
        sweep = {"format": SWEEP_FORMAT, "format_version": SWEEP_VERSION, "key": key, "settings": settings,
                 "cell": name, "sampling_cell": c["name"], "nfe": nfe(c["sampler"], c["steps"]),
                 "device": str(device), "torch_threads": torch.get_num_threads(),
                 "timing": {"generate_s": gen_s, "s_per_image": gen_s / spec.n, "cpu_s": cpu_s,
                            "cpu_s_per_image": cpu_s / spec.n, "eval_s": eval_s},
                 "memory": {"kind": mem.kind, "scope": mem.scope, "peak_mb": mem.peak, "start_mb": mem.start,
                            "delta_mb": mem.delta}}
        if train:
            tcell, summary = train
            sweep["train"] = {"cell": tcell["name"], "settings": tcell["settings"], "step": summary.get("step"),
                              "minutes": summary.get("minutes"), "stop_reason": summary.get("stop_reason")}
        full = {"name": name, "source": source, "sweep": sweep, **result}
        _write_json(path, full)
        counts["computed"] += 1
        row = row_from_result(full)
        rows.append(row)
        log(f"largo: sweep: {name}: acc {_fmt(row['class_acc'])}  FD_cls {_fmt(row['fd_cls'])}  "
            f"{row['s_per_img']:.4g} s/img  peak {row['peak_mem_mb']:.0f} MB")
        write_table(spec, rows, partial=True)


def _find_reusable(spec: SweepSpec, sampling_name: str, name: str, key: str) -> dict | None:
    for folder in spec.reuse:
        other = _read_cell(Path(folder) / "cells" / f"{name}.json")
        if other is not None and other["sweep"].get("key") == key:
            other["sweep"]["reused_from"] = str(Path(folder) / "cells" / f"{name}.json")
            return other
    return None


# -- the table -----------------------------------------------------------------------------------------
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
        "clip_x0": src.get("clip_x0", False), "sample_precision": src.get("sample_precision", "auto"),
        "n": src["n"], "seed": src["seed"],
        "class_acc": _get(cls, "accuracy", "overall"), "fd_cls": _get(cls, "fd", "value"),
        "kid_cls": _get(cls, "kid", "mean"), "precision": _get(cls, "precision_recall", "precision"),
        "recall": _get(cls, "precision_recall", "recall"), "cm_fd": _get(cls, "class_matched", "mean", "fd"),
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


def _fmt(v: Any) -> str:
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
    from largo.io import atomic_write_text

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
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    atomic_write_text(spec.out / "results.md", "\n".join(head + lines) + "\n")


def read_rows(out: str | Path) -> list[dict]:
    """The rows of a finished sweep folder's cells (for reports and benchmarks)."""
    rows = []
    for p in sorted((Path(out) / "cells").glob("*.json")):
        r = _read_cell(p)
        if r is not None:
            rows.append(row_from_result(r))
    return rows
