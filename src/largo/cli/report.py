"""`largo report RUN_DIR`: one self-contained HTML page about a run (config, curves, samples, trajectory,
metrics), written to RUN_DIR/report/index.html with its images embedded."""

from __future__ import annotations

import argparse
from pathlib import Path

from largo.cli.sampling_flags import add_sampling_flags, flag_label, sampling_overrides


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
    p.add_argument("--class", dest="class_name", default=None, help="class of the trajectory (default: the first)")
    add_sampling_flags(p, only=("sampler", "steps", "cfg", "weights"))
    p.add_argument("--every", type=int, help="trajectory: show every k-th step (default: steps // 8)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from largo.runtime import resolve_device
    from largo.viz.report import build_report

    index = build_report(args.run_dir, args.out, per_class=args.n, seed=args.seed, trajectory_class=args.class_name,
                         sampling=sampling_overrides(args), every=args.every, weights=args.weights,
                         device=resolve_device(args.device), label=flag_label)
    print(f"largo: report → {index}")
    return 0
