"""`largo distill`: few-step students of a guided teacher (progressive distillation, guidance folded in)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cfg_range(text: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W or LO,HI (numbers), got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected W or LO,HI, got {text!r}")
    return (values[0], values[-1])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distill a guided model into few-step students (writes a run directory)",
                       description="Progressive distillation (Salimans & Ho 2022) with the guidance folded into "
                                   "the student (Meng et al. 2023): each round halves the DDIM steps, from --steps "
                                   "down to --to; the student takes w as input (one pass per step). Trains on the "
                                   "teacher's own samples (no dataset needed) or, with --data, its dataset. Run it "
                                   "again to continue an interrupted one.")
    p.add_argument("teacher", metavar="RUN_OR_NAME", help="run directory, checkpoint folder or released name")
    p.add_argument("--steps", type=int, required=True, help="the first student's steps (a power of two; its "
                                                            "teacher walks twice as many)")
    p.add_argument("--to", type=int, help="the last student's steps (default: --steps, one round)")
    p.add_argument("--cfg", type=_cfg_range, help="guidance w of the teacher's target: W, or LO,HI drawn "
                                                  "uniformly (default: the teacher's sample cfg)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--iters-per-round", type=int, default=0, help="optimizer steps per round")
    budget.add_argument("--minutes-per-round", type=float, default=0.0, help="wall-clock minutes per round")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--pool", type=int, default=1000, help="teacher samples to distill on (default 1000)")
    p.add_argument("--pool-steps", type=int, default=0, help="the teacher's sampler steps for them (default: its "
                                                              "sample config's)")
    p.add_argument("--teacher-solver", default="dpmpp2m", choices=("dpmpp2m", "ddim"),
                   help="how the first round's teacher integrates each student step (default dpmpp2m: "
                        "DPM-Solver++(2M); ddim with --teacher-substeps 2 is plain progressive distillation)")
    p.add_argument("--teacher-substeps", type=int, default=4, help="the first round teacher's steps per student "
                                                                    "step (default 4; later rounds: 2 DDIM steps)")
    p.add_argument("--method", default="progressive", choices=("progressive", "consistency"),
                   help="progressive: rounds halving the steps (default); consistency: consistency distillation "
                        "(Song et al. 2023), one network for every step count from --steps to --to, trained once "
                        "with the whole --iters-per-round / --minutes-per-round budget")
    p.add_argument("--cd-grid", type=int, default=32, help="consistency: the teacher's grid points (default 32)")
    p.add_argument("--cd-target-decay", type=float, default=0.95, help="consistency: the target network's EMA "
                                                                        "decay (default 0.95)")
    p.add_argument("--pool-from", default="", metavar="FILE", help="reuse a teacher_samples.pt (or the folder "
                                                                    "holding one) of the same teacher, w and --pool")
    p.add_argument("--data", action="store_true", help="train on the teacher's training images (its dataset) "
                   "instead of its own samples: no pool to sample")
    p.add_argument("--data-root", default="", help="with --data: the dataset root (default: the teacher's, else "
                   "../shared/data)")
    p.add_argument("--width", type=int, default=1, help="the student's channels as a multiple of the teacher's "
                   "(default 1; 2: a wider student that starts as the teacher's function, about 4x the compute)")
    p.add_argument("--reuse", type=int, default=1, help="train on each teacher target R times on average (a bank "
                   "of targets; default 1: every pair fresh). The teacher is most of a step's cost")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="the students' run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from largo.train.distill import DistillSettings, distill

    settings = DistillSettings(args.steps, args.to or args.steps, args.cfg, args.iters_per_round,
                               args.minutes_per_round, args.batch_size, args.lr, args.pool, args.pool_steps, args.seed,
                               args.teacher_solver, args.teacher_substeps, args.pool_from, args.method, args.cd_grid,
                               args.cd_target_decay, args.data, args.data_root, args.width,
                               args.reuse)
    summary = distill(args.teacher, args.out, settings, device=args.device, precision=args.precision,
                      progress=not args.quiet, log=lambda line: print(f"largo: {line}", flush=True))
    for steps, r in summary["rounds"].items():
        print(f"largo: {steps}-step student ({r['minutes']:.1f} min) → {r['run']}")
    if summary["stop_reason"] != "done":
        print(f"largo: stopped ({summary['stop_reason']}); run the same command again to continue")
    print(f"largo: students in {summary['out']} (largo sample {summary['out']} --steps N)")
    return 0
