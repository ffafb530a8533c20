"""`largo demo`: the main job. Trains a small class-conditional model on Fashion-MNIST on the CPU within a
wall-clock budget, draws one row per class, and checks the samples with the shipped domain classifier."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a small Fashion-MNIST model on this machine and show its samples",
                       description="Train the 'demo' preset under a time budget, sample one row per class and "
                                   "report how many samples the Fashion-MNIST classifier recognises.")
    p.add_argument("--minutes", type=float, default=None, help="training budget (default: the demo preset's)")
    p.add_argument("--run-dir", type=Path, help="default: runs/demo-<time>")
    p.add_argument("--data-root", default="", help="dataset root (default: ../shared/data when present)")
    p.add_argument("--device", default="auto")
    p.add_argument("--per-class", type=int, default=8, help="images per class in the grid")
    p.add_argument("--check-per-class", type=int, default=30, help="samples per class the classifier checks")
    p.add_argument("--flowers", action="store_true",
                   help="instead of training, draw flowers from the released flowers102-64 checkpoint on this "
                        "machine (one row per class)")
    p.add_argument("--classes", default="sunflower,rose,passion flower,daffodil",
                   help="--flowers: comma-separated class names or indices")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from largo.demo import flowers_demo, run_demo

    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.flowers:
        flowers_demo(args.classes, args.per_class, args.run_dir, args.device, log=log)
    else:
        run_demo(args.minutes, args.run_dir, args.data_root, args.device, args.per_class, args.check_per_class, log)
    return 0
