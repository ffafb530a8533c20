"""`largo export`: a run's EMA weights as a small, self-describing release folder (fp16 safetensors + meta)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run's EMA weights as a release checkpoint",
                       description="Write OUT/ema.safetensors (fp16 or fp32) and OUT/meta.json from a run's "
                                   "latest checkpoint; `largo sample OUT` (or its name, inside checkpoints/) "
                                   "then works without the training state.")
    p.add_argument("source", help="run directory or checkpoint folder")
    p.add_argument("--out", type=Path, required=True, help="release folder to write")
    p.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    p.add_argument("--ema-length", type=float, metavar="SIGMA_REL",
                   help="export the post-hoc EMA of this length (a run trained with --phema-every N) instead of the "
                        "run's EMA")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from largo.checkpoint import export_release
    from largo.train.phema import export_post_hoc

    if args.ema_length is not None:
        r = export_post_hoc(args.source, args.ema_length, args.out, args.dtype)
    else:
        r = export_release(args.source, args.out, args.dtype)
    print(f"largo: exported step {r['step']} EMA weights ({r['dtype']}, {r['size_mib']:.1f} MiB) → {r['out']}")
    print(json.dumps({"params": r["params"]}))
    return 0
