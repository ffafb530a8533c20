"""`largo sweep CONFIG`: generate and evaluate every cell of a sampling (or training) grid; resumable."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="evaluate a grid of sampling/training settings (resumable table)",
                       description="Run every cell of a sweep config (JSON) on one checkpoint, or train one run per "
                                   "training setting and evaluate each: seeded generation (the same seeds in every "
                                   "cell), classifier metrics, variance gap, time per image and peak memory. "
                                   "Writes OUT/results.csv, OUT/results.md and OUT/cells/<cell>.json; finished "
                                   "cells are not recomputed. See docs/STUDIES.md for the config format.")
    p.add_argument("config", type=Path, help="sweep config JSON (e.g. configs/studies/cfg_scale.json)")
    p.add_argument("--checkpoint", help="override the config's checkpoint (run dir, checkpoint folder or name)")
    p.add_argument("--out", help="override the config's output folder")
    p.add_argument("--n", type=int, help="override the images per cell")
    p.add_argument("--device", help="override the device (auto, cpu, cuda, cuda:N)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and what is already done; run nothing")
    p.add_argument("--progress", action="store_true", help="progress bars while sampling/training")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from largo.sweep import load_spec, run_sweep

    spec = load_spec(args.config, checkpoint=args.checkpoint, out=args.out, n=args.n, device=args.device)
    if args.checkpoint and spec.train_grid:
        from largo.errors import LargoError

        raise LargoError("--checkpoint does not apply to a training sweep (train_grid)")
    if args.dry_run:
        _dry_run(spec)
        return 0
    run_sweep(spec, progress=args.progress)
    return 0


def _dry_run(spec) -> None:
    from largo.config import RunConfig
    from largo.sweep import cell_status, checkpoint_groups, sampling_cells, train_cells
    from largo.train.checkpoint import latest_checkpoint, read_meta

    if spec.train_grid:
        groups = []
        for t in train_cells(spec):
            ckpt = latest_checkpoint(spec.out / "runs" / t["name"])  # None until trained
            groups.append((t["name"] + "__", ckpt, t["config"].sample))
    else:
        groups = [(prefix, ckpt, RunConfig.from_dict(read_meta(ckpt)["config"]).sample)
                  for prefix, ckpt in checkpoint_groups(spec)]
    total = 0
    for prefix, ckpt, sample_defaults in groups:
        meta = read_meta(ckpt) if ckpt is not None else {}
        for c in sampling_cells(spec, sample_defaults):
            name = prefix + c["name"]
            status = cell_status(spec, ckpt, meta, c, name) if ckpt is not None else "todo (not trained)"
            print(f"{status:<5}  {name}")
            total += 1
    print(f"largo: {total} cells, N = {spec.n}, out {spec.out}")
