"""`largo train`: train a class-conditional diffusion model; `--resume RUN_DIR` continues one."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from largo.config import PRESETS, RunConfig, add_config_flags, apply_flags, preset_config


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
    from largo.errors import LargoError
    from largo.train.trainer import Trainer

    if args.resume:
        run_dir = args.resume
        if args.preset or args.config or args.run_dir:
            raise LargoError("--resume takes its config from the run; drop --preset/--config/--run-dir")
        cfg = RunConfig.load(run_dir / "config.json")
        frozen = [n for n in ("data", "model", "diffusion")
                  if _given(args, n)]
        if frozen:
            raise LargoError(f"--resume cannot change the {', '.join(frozen)} config of a run; only train and "
                             f"sample flags")
        cfg = apply_flags(cfg, args, sections=("train", "sample"))
    else:
        cfg = RunConfig.load(args.config) if args.config else (preset_config(args.preset) if args.preset
                                                               else RunConfig())
        cfg = apply_flags(cfg, args)
        name = cfg.preset or cfg.data.dataset.replace("folder:", "folder-").replace("/", "_")
        run_dir = args.run_dir or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (run_dir / "checkpoints").exists() or (run_dir / "config.json").exists():
            raise LargoError(f"run directory {run_dir} already holds a run; use --resume {run_dir} to continue "
                             f"it or choose another --run-dir")
    cfg.validate()
    trainer = Trainer(cfg, run_dir, resume=bool(args.resume), progress=not args.quiet)
    print(f"largo: training {cfg.data.dataset} at {cfg.data.resolution}px on {trainer.device} "
          f"({trainer.amp_dtype}), {sum(p.numel() for p in trainer.net.parameters()) / 1e6:.2f} M parameters, "
          f"step {trainer.step} → {trainer.total_steps}; run: {run_dir}", flush=True)
    summary = trainer.fit()
    print(f"largo: stopped at step {summary['step']} ({summary['stop_reason']}) after {summary['minutes']:.1f} min")
    print(f"largo: checkpoint {summary['checkpoint']}")
    print(f"largo: samples    {summary['grid']}")
    return 0


def _given(args: argparse.Namespace, section: str) -> bool:
    from largo.config import SECTIONS, _field_types

    return any(getattr(args, n, None) is not None for n in _field_types(SECTIONS[section]))
