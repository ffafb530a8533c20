"""Reading and checking a sweep config (the format is described in `largo.sweep`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from largo.config import (PRESETS, SPLITS, WEIGHTS, DiffusionConfig, RunConfig, check_overrides, preset_config,
                          with_overrides)
from largo.errors import LargoError
from largo.io import read_json
from largo.sampling.options import SamplingOptions, check_option_values

SWEEP_FORMAT = "largo-sweep-cell"
SWEEP_VERSION = 1
# A grid key is a SamplingOptions field (cfg_interval excepted), or `weights`: which of a checkpoint's networks samples.
# Not grid keys: the guidance interval and the guide model (autoguidance), which are set per command.
GRID_KEYS = (*(name for name in SamplingOptions.names() if name not in ("cfg_interval", "guide_with")), "weights")
RENAMED_GRID_KEYS = {"sample_precision": "precision"}  # sweep files written before the one vocabulary
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


def fail(msg: str) -> None:
    raise LargoError(f"sweep config: {msg}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_grid_value(key: str, v: Any) -> Any:
    if key == "weights":
        if v not in WEIGHTS:
            fail(f"unknown weights {v!r} in grid; valid: {', '.join(WEIGHTS)}")
        return v
    check_option_values({key: v}, prefix="sweep config: grid: ")
    return float(v) if key in ("cfg", "eta") else v


def _parse_grid(grid: Any) -> list[dict[str, list]]:
    parts = grid if isinstance(grid, list) else [grid]
    if not parts:
        fail("grid is an empty list")
    out = []
    for part in parts:
        if not isinstance(part, dict):
            fail(f"grid must be an object {{key: [values]}} or a list of them, got {part!r}")
        for old, new in RENAMED_GRID_KEYS.items():
            if old in part:
                fail(f'grid key "{old}" is now "{new}"')
        unknown = set(part) - set(GRID_KEYS)
        if unknown:
            fail(f"unknown grid key(s) {sorted(unknown)}; valid: {', '.join(GRID_KEYS)}")
        clean = {}
        for key in GRID_KEYS:
            if key not in part:
                continue
            values = part[key] if isinstance(part[key], list) else [part[key]]
            if not values:
                fail(f"grid {key} is an empty list")
            clean[key] = [_check_grid_value(key, v) for v in values]
        out.append(clean)
    return out


def load_spec(path: str | Path, **overrides: Any) -> SweepSpec:
    """Read and check a sweep config; `overrides` (checkpoint, out, n, device) win over the file's values."""
    d = read_json(path, "sweep config")
    if not isinstance(d, dict):
        fail("expected a JSON object at the top level")
    d = {**d, **{k: v for k, v in overrides.items() if v is not None}}
    return spec_from_dict(d, source=str(path))


def spec_from_dict(d: dict, source: str = "") -> SweepSpec:
    unknown = set(d) - set(TOP_KEYS)
    if unknown:
        fail(f"unknown key(s) {sorted(unknown)}; valid: {', '.join(TOP_KEYS)}")
    if "out" not in d or not isinstance(d["out"], str) or not d["out"]:
        fail('"out" (the output folder) is required')
    has_ckpt, has_train = d.get("checkpoint") is not None, d.get("train_grid") is not None
    if has_ckpt == has_train:
        fail('give exactly one of "checkpoint" (sampling sweep) or "train_grid" (training sweep)')
    if has_ckpt and not (isinstance(d["checkpoint"], str) or (
            isinstance(d["checkpoint"], list) and d["checkpoint"] and all(isinstance(c, str) for c in d["checkpoint"]))):
        fail('"checkpoint" must be a path or a released checkpoint name, or a list of them')
    n, seed = d.get("n", 1000), d.get("seed", 0)
    if not _is_int(n) or n < 2:
        fail(f'"n" must be an integer >= 2, got {n!r}')
    if not _is_int(seed) or seed < 0:
        fail(f'"seed" must be an integer >= 0, got {seed!r}')
    spec = SweepSpec(out=Path(d["out"]), grid=_parse_grid(d.get("grid", {})), checkpoint=d.get("checkpoint"),
                     n=n, seed=seed, source=source)
    for key, check, msg in (("batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
                            ("ref_n", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
                            ("kid_subsets", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
                            ("ref_split", lambda v: v in SPLITS, " or ".join(SPLITS)),
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
                fail(f'"{key}" must be {msg}, got {d[key]!r}')
            setattr(spec, key, d[key])
    if has_train:
        tg = d["train_grid"]
        if not isinstance(tg, dict) or not tg:
            fail('"train_grid" must be a non-empty object {config field: [values]}')
        lists = {k: (v if isinstance(v, list) else [v]) for k, v in tg.items()}
        for k, v in lists.items():
            if not v:
                fail(f"train_grid {k} is an empty list")
            for value in v:
                check_overrides({k: value}, "train_grid")
        spec.train_grid = lists
        spec.base_config = d.get("base_config", "demo")
        train = d.get("train", {})
        if not isinstance(train, dict):
            fail('"train" must be an object of train-section fields, e.g. {"steps": 2000}')
        spec.train = check_overrides(train, "train", ("train",))
        for cell in train_cells(spec):  # every training setting must be a valid config before anything runs
            cell["config"].validate()
    else:
        for key in ("base_config", "train"):
            if key in d:
                fail(f'"{key}" only applies with "train_grid"')
    return spec


def base_run_config(base: Any) -> RunConfig:
    if isinstance(base, str):
        if base in PRESETS:
            return preset_config(base)
        if Path(base).is_file():
            return RunConfig.load(base)
        fail(f"base_config {base!r} is neither a preset ({', '.join(PRESETS)}) nor a config.json file")
    if not isinstance(base, dict):
        fail("base_config must be a preset name, a config.json path or an object")
    base = dict(base)
    preset, path = base.pop("preset", None), base.pop("config", None)
    if preset is not None and path is not None:
        fail('base_config takes "preset" or "config", not both')
    cfg = base_run_config(preset) if preset else (RunConfig.load(path) if path else RunConfig())
    return with_overrides(cfg, check_overrides(base, "base_config"))


def num_name(x: float) -> str:
    return f"{x:g}".replace("-", "m")


def _value_name(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    if isinstance(v, float):
        return num_name(v)
    return str(v).replace("/", "_").replace(":", "_")


def train_cells(spec: SweepSpec) -> list[dict]:
    base = with_overrides(base_run_config(spec.base_config), spec.train)
    if spec.device != "auto":
        base = with_overrides(base, {"device": spec.device})
    keys = list(spec.train_grid)
    cells = []
    for combo in itertools.product(*(spec.train_grid[k] for k in keys)):
        overrides = check_overrides(dict(zip(keys, combo)), "train_grid")
        name = "__".join(f"{k}-{_value_name(v)}" for k, v in overrides.items())
        cells.append({"name": name, "settings": overrides, "config": _drop_switched_off(with_overrides(base, overrides))})
    return cells


def _drop_switched_off(cfg: RunConfig) -> RunConfig:
    """A cell whose grid turns the auxiliary losses off (the baseline of an aux-loss study) drops the aux settings
    its base config shares with the other cells: a run's config holds only settings that take effect."""
    d = cfg.diffusion
    if d.perceptual_weight or d.feature_match_weight:
        return cfg
    off = DiffusionConfig()
    return with_overrides(cfg, {"aux_net": off.aux_net, "aux_layers": off.aux_layers, "aux_max_t": off.aux_max_t})
