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
    from largo.errors import LargoError
    from largo.sweep import load_spec, plan, run_sweep

    spec = load_spec(args.config, checkpoint=args.checkpoint, out=args.out, n=args.n, device=args.device)
    if args.checkpoint and spec.train_grid:
        raise LargoError("--checkpoint does not apply to a training sweep (train_grid)")
    if args.dry_run:
        cells = plan(spec)
        for status, name in cells:
            print(f"{status:<5}  {name}")
        print(f"largo: {len(cells)} cells, N = {spec.n}, out {spec.out}")
        return 0
    run_sweep(spec, progress=args.progress)
    return 0
