"""`largo train`: train a class-conditional diffusion model; `--resume RUN_DIR` continues one."""

from __future__ import annotations

import argparse
from pathlib import Path

from largo.config import PRESETS, add_config_flags, flag_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (writes a run directory)",
                       description="Train a class-conditional diffusion model. Every config field is a flag; "
                                   "a preset or a config.json gives the starting values.")
    p.add_argument("--preset", choices=sorted(PRESETS), help="starting config (default: dataclass defaults)")
    p.add_argument("--config", type=Path, help="a config.json to start from (e.g. another run's)")
    p.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/<name>-<time>)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue this run from its latest checkpoint (train/sample flags may change)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from largo.train import run_config, train

    cfg, run_dir = run_config(preset=args.preset, config=args.config, run_dir=args.run_dir,
                               resume=args.resume, overrides=flag_overrides(args))
    summary = train(cfg, run_dir, resume=bool(args.resume), progress=not args.quiet,
                    log=lambda line: print(f"largo: {line}", flush=True))
    print(f"largo: stopped at step {summary['step']} ({summary['stop_reason']}) after {summary['minutes']:.1f} min")
    print(f"largo: checkpoint {summary['checkpoint']}")
    print(f"largo: samples    {summary['grid']}")
    return 0
