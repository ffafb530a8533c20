"""`largo ema RUN --length 0.05,0.1,0.2`: post-hoc EMA, the weights of any EMA length reconstructed after training."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ema", help="reconstruct EMA lengths after training (post-hoc EMA, EDM2)",
                       description="Reconstruct the power-function EMA of each length (σ_rel, the profile's width as "
                                   "a fraction of the run) at the last snapshot from the snapshots a run trained "
                                   "with --phema-every N wrote; one sampleable folder per length.")
    p.add_argument("run", type=Path, help="a run directory trained with --phema-every N")
    p.add_argument("--length", required=True, help="comma-separated σ_rel values in (0, 0.28], e.g. 0.05,0.1,0.2")
    p.add_argument("--out", type=Path, help="where the folders go (default: RUN/phema); each is ema-<length>/")
    p.set_defaults(func=run)


def parse_lengths(text: str) -> list[float]:
    from largo.errors import LargoError

    try:
        lengths = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LargoError(f"--length takes comma-separated numbers, got {text!r}") from None
    if not lengths:
        raise LargoError("--length needs at least one EMA length")
    return lengths


def run(args: argparse.Namespace) -> int:
    from largo.train.phema import post_hoc_ema

    for path in post_hoc_ema(args.run, parse_lengths(args.length), args.out):
        print(f"largo: EMA length {path.name.split('-', 1)[1]} → {path}  (largo sample {path})")
    return 0
