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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import load_file, save_file

    from largo.errors import LargoError
    from largo.io import atomic_write, atomic_write_json
    from largo.train.checkpoint import read_meta, resolve_checkpoint

    ckpt = resolve_checkpoint(args.source)
    meta = read_meta(ckpt)
    if args.out.resolve() == ckpt.resolve():
        raise LargoError("--out must differ from the source checkpoint")
    state = load_file(str(ckpt / "ema.safetensors"))
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    for name, value in state.items():
        if not torch.isfinite(value.float()).all():
            raise LargoError(f"EMA weight {name} is not finite in {args.dtype}; export with --dtype fp32")
    atomic_write(args.out / "ema.safetensors", lambda tmp: save_file(state, tmp))
    release = {**meta, "exported_from": str(ckpt), "weights_dtype": args.dtype}
    atomic_write_json(args.out / "meta.json", release)
    size = (args.out / "ema.safetensors").stat().st_size / 2**20
    print(f"largo: exported step {meta['step']} EMA weights ({args.dtype}, {size:.1f} MiB) → {args.out}")
    print(json.dumps({"params": sum(v.numel() for v in state.values())}))
    return 0
