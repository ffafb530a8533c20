"""`largo report RUN_DIR`: one self-contained HTML page about a run (config, curves, samples, trajectory,
metrics), written to RUN_DIR/report/index.html with its images embedded."""

from __future__ import annotations

import argparse
from pathlib import Path

from largo.config import SAMPLERS
from largo.errors import LargoError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write an HTML report of a run (config, curves, samples, metrics)",
                       description="Write RUN_DIR/report/index.html: the run's config, training curves, a sample "
                                   "grid by class, a reverse-process trajectory and every metrics JSON under "
                                   "RUN_DIR (e.g. eval/*.json) as tables. Images are embedded, so the one file "
                                   "opens offline anywhere; the PNGs are also written beside it.")
    p.add_argument("run_dir", type=Path, help="run directory (with checkpoints/ and log.jsonl)")
    p.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/report)")
    p.add_argument("--n", type=int, default=8, help="samples per class in the grid (default 8)")
    p.add_argument("--seed", type=int, default=0, help="image i of the grid uses seed SEED+i")
    p.add_argument("--class", dest="class_name", default="", help="class of the trajectory (default: the first)")
    p.add_argument("--sampler", choices=SAMPLERS, help="default: the run's sample config")
    p.add_argument("--steps", type=int, help="sampling steps (default: the run's)")
    p.add_argument("--cfg", type=float, help="guidance scale w (default: the run's)")
    p.add_argument("--every", type=int, help="trajectory: show every k-th step (default: steps // 8)")
    p.add_argument("--weights", choices=("ema", "online"), default="ema")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from largo.train.trainer import resolve_device
    from largo.viz.report import build_report

    if args.n < 1:
        raise LargoError("--n must be >= 1")
    cls = None
    if args.class_name:
        from largo.cli.sample import parse_classes
        from largo.train.checkpoint import read_meta, resolve_checkpoint

        meta = read_meta(resolve_checkpoint(args.run_dir))
        names = meta.get("class_names") or [str(i) for i in range(meta["config"]["model"]["num_classes"])]
        picked = parse_classes(args.class_name, names)
        if len(picked) != 1:
            raise LargoError(f"--class takes one class, got {args.class_name!r}")
        cls = picked[0]
    index = build_report(args.run_dir, args.out, per_class=args.n, seed=args.seed, trajectory_class=cls,
                         sampler=args.sampler, steps=args.steps, cfg_scale=args.cfg, every=args.every,
                         weights=args.weights, device=resolve_device(args.device))
    print(f"largo: report → {index}")
    return 0
