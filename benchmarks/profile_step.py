"""Where a training step of a preset spends its time on this CPU, its FLOPs per image, and this CPU's ceiling.

    python benchmarks/profile_step.py                                   # demo preset, fp32, torch's threads
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/profile_step.py --precision fp32
    python benchmarks/profile_step.py --precision bf16 --set data.resolution=28 --set model.attention_resolutions=[7]

One script, one process, three measurements (docs/SPEED.md, issue 23):
  * the real `Trainer.train_step` on the real Fashion-MNIST stream under `torch.profiler`, self CPU time summed by
    operator family (convolution, GroupNorm, SiLU, attention, linear, optimizer, EMA, data, other), after warm-up;
  * FLOPs per image of one forward + backward (`torch.utils.flop_counter.FlopCounterMode`: convolutions,
    matmuls and attention; element-wise ops are not counted, so this is the work the ceiling applies to);
  * this CPU's ceiling for the same precision and threads: a 2048² matmul and a 3×3 convolution of 64 channels
    at 16×16 (batch 64, forward), each timed after warm-up, in GFLOP/s.
The step's achieved GFLOP/s (FLOPs per image × images/s) is then given as a fraction of both ceilings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from _common import load_average, set_fields
from largo.config import preset_config
from largo.diffusion.loss import diffusion_loss
from largo.runtime import autocast
from largo.train.trainer import Trainer

FAMILIES = [  # (family, substrings of aten op names), first match wins
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention", "softmax")),
    ("convolution", ("conv", "mkldnn_convolution")),
    ("groupnorm", ("group_norm",)),
    ("silu", ("silu",)),
    ("linear/matmul", ("addmm", "aten::mm", "bmm", "matmul", "linear")),
    ("optimizer", ("_foreach_mul", "_foreach_add", "_foreach_addcdiv", "_foreach_sqrt", "_foreach_div",
                   "_foreach_addcmul", "_foreach_maximum", "_foreach_sub", "_foreach_neg", "adam", "_foreach_norm",
                   "clip_grad", "_foreach_pow")),
    ("ema", ("_foreach_lerp",)),
    ("data", ("index", "gather", "flip", "randperm", "to_copy", "aten::where")),
    ("loss/elementwise", ("mse", "pow", "mul", "add", "sub", "mean", "sum", "div", "randn", "exp", "sqrt", "rand")),
    ("layout/copies", ("copy_", "cat", "clone", "contiguous", "upsample", "permute", "transpose", "reshape", "view")),
]


def family(name: str) -> str:
    for fam, keys in FAMILIES:
        if any(k in name for k in keys):
            return fam
    return "other"


def ceiling(dtype: torch.dtype, reps: int = 10) -> dict[str, float]:
    """GFLOP/s of a 2048² matmul and of a 3×3 conv, 64 → 64 channels, 16×16, batch 64 (forward), in `dtype`."""
    out = {}
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    x, w = torch.randn(64, 64, 16, 16, dtype=dtype), torch.randn(64, 64, 3, 3, dtype=dtype)
    for name, fn, flops in (("matmul_2048", lambda: a @ b, 2 * 2048**3),
                            ("conv3x3_64ch_16px", lambda: torch.nn.functional.conv2d(x, w, padding=1),
                             2 * 64 * 64 * 9 * 64 * 16 * 16)):
        for _ in range(2):
            fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        out[name] = flops * reps / (time.perf_counter() - t0) / 1e9
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="demo")
    p.add_argument("--precision", default="fp32", help="fp32 | bf16")
    p.add_argument("--steps", type=int, default=10, help="profiled steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=JSON",
                   help="override a config field, e.g. model.channels_last... (repeatable)")
    p.add_argument("--json", type=Path, help="append the result as one JSON line")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = preset_config(a.preset)
    cfg.train = dataclasses.replace(cfg.train, precision=a.precision, device="cpu", max_minutes=0.0, steps=10**6,
                                    checkpoint_every=10**6, lr_warmup=0)
    cfg = set_fields(cfg, a.set)
    isa = os.environ.get("ATEN_CPU_CAPABILITY", "default") + "/" + os.environ.get("ONEDNN_MAX_CPU_ISA", "default")
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, Path(tmp), progress=False)
        batch = cfg.train.batch_size
        for _ in range(a.warmup):
            tr.train_step()
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(a.steps):
                tr.train_step()
        seconds = time.perf_counter() - t0
        # FLOPs of one forward + backward of the loss (the profiler's overhead is not in the timing below)
        x, y = tr.stream.next()
        counter = FlopCounterMode(display=False)
        with counter, autocast(tr.device, tr.amp_dtype):
            diffusion_loss(tr.net, x, y, tr.task.schedule, tr.cfg.diffusion).backward()
        flops_per_image = counter.get_total_flops() / batch
        t0 = time.perf_counter()
        for _ in range(a.steps):
            tr.train_step()
        images_per_s = batch * a.steps / (time.perf_counter() - t0)
    by_family: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        by_family[family(ev.key)] += ev.self_cpu_time_total / 1e6
    total = sum(by_family.values())
    ceil = ceiling(torch.bfloat16 if a.precision == "bf16" else torch.float32)
    achieved = flops_per_image * images_per_s / 1e9
    result = {"preset": a.preset, "overrides": a.set, "precision": a.precision, "isa": isa,
              "threads": torch.get_num_threads(), "batch": batch, "images_per_s": images_per_s,
              "gflop_per_image": flops_per_image / 1e9, "achieved_gflops": achieved, "ceiling_gflops": ceil,
              "profiled_seconds": seconds, "share_by_family": {k: v / total for k, v in by_family.items()},
              "load_average": load_average()}
    print(f"{a.preset} {' '.join(a.set)}: {a.precision}, ISA {isa}, {torch.get_num_threads()} thread(s), batch {batch}, "
          f"load {load_average()}")
    print(f"  {images_per_s:.1f} images/s; {flops_per_image / 1e9:.3f} GFLOP per image (fwd + bwd) → "
          f"{achieved:.1f} GFLOP/s achieved")
    for name, g in ceil.items():
        print(f"  ceiling {name}: {g:.1f} GFLOP/s → the step reaches {achieved / g:.0%}")
    print("  self CPU time by operator family (profiled steps):")
    for fam, sec in sorted(by_family.items(), key=lambda kv: -kv[1]):
        print(f"    {fam:18s} {sec / total:6.1%}  ({sec * 1000 / a.steps:.0f} ms/step)")
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
