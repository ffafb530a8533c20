"""A sweep's cells: the sampling grid and the training grid expanded, named, and keyed by their settings."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from largo.diffusion.samplers import heun_intervals
from largo.sampling import SamplingOptions
from largo.sampling.options import CONFIG_FIELDS
from largo.sweep.spec import GRID_KEYS, SWEEP_FORMAT, SweepSpec, num_name


def nfe(sampler: str, steps: int) -> int:
    """Network evaluations per image (a guided evaluation of the 2B batch counts once)."""
    if sampler == "heun":
        return 2 * heun_intervals(steps) - 1
    return steps


def sampling_cells(spec: SweepSpec, defaults: Any) -> list[dict]:
    """The grid's cells with unset keys taken from `defaults` (a SampleConfig); de-duplicated, in grid order."""
    base = {**{key: getattr(defaults, CONFIG_FIELDS.get(key, key)) for key in GRID_KEYS if key != "weights"},
            "weights": "ema"}
    base["cfg"], base["eta"], base["clip_x0"] = float(base["cfg"]), float(base["eta"]), bool(base["clip_x0"])
    cells, seen = [], set()
    for part in spec.grid:
        keys = list(part)
        for combo in itertools.product(*(part[k] for k in keys)):
            c = {**base, **dict(zip(keys, combo))}
            if c["sampler"] != "ddim":
                c["eta"] = 0.0  # only DDIM reads eta
            c["name"] = (f"{c['sampler']}-{c['steps']}-cfg{num_name(c['cfg'])}-eta{num_name(c['eta'])}-{c['spacing']}-"
                         f"{c['weights']}" + ("-clip" if c["clip_x0"] else "")
                         + ("" if c["precision"] == "auto" else f"-{c['precision']}"))
            if c["name"] not in seen:
                seen.add(c["name"])
                cells.append(c)
    return cells


def cell_options(cell: dict) -> SamplingOptions:
    """The sampling options of a cell (its grid keys but `weights`)."""
    return SamplingOptions(**{key: cell[key] for key in GRID_KEYS if key != "weights"})


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
    old = read_cell(spec.out / "cells" / f"{name}.json")
    if old is not None and old["sweep"].get("key") == key:
        return "done"
    if find_reusable(spec, cell["name"], name, key) is not None:
        return "reuse"
    return "todo" if old is None else "stale"


def cell_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_cell(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) and d.get("sweep", {}).get("format") == SWEEP_FORMAT else None


def find_reusable(spec: SweepSpec, sampling_name: str, name: str, key: str) -> dict | None:
    for folder in spec.reuse:
        other = read_cell(Path(folder) / "cells" / f"{name}.json")
        if other is not None and other["sweep"].get("key") == key:
            other["sweep"]["reused_from"] = str(Path(folder) / "cells" / f"{name}.json")
            return other
    return None
