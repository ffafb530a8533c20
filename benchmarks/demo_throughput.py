"""Training images per second of demo variants, measured alternately in one process, as ratios to the first.

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/demo_throughput.py --precision fp32 \
        --variant "preset=demo32" --variant "preset=demo32 train.batch_size=32" \
        --variant "preset=demo32 data.resolution=28 model.attention_resolutions=[7]" --variant "preset=demo"

Each variant is the `demo` preset (or `preset=NAME` first) with space-separated SECTION.FIELD=JSON overrides ("" =
the preset as it is), trained by the real `Trainer.train_step` on the real Fashion-MNIST stream. Every round times
`--steps` steps of
each variant in turn (after `--warmup` untimed steps when the variant is first built), so a change in the
machine's load touches all variants alike; the ratio per round is images/s of the variant over the first
variant's, and the median over rounds is reported (issue 23's throughput target is stated as such a ratio).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _common import load_average, set_fields
from largo.config import preset_config
from largo.train.trainer import Trainer


def variant_config(overrides: str, precision: str):
    items = overrides.split()
    preset = items.pop(0).partition("=")[2] if items and items[0].startswith("preset=") else "demo"
    cfg = preset_config(preset)
    cfg.train = dataclasses.replace(cfg.train, precision=precision, device="cpu", max_minutes=0.0, steps=10**6,
                                    checkpoint_every=10**6)
    return set_fields(cfg, items)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", default=[], help="overrides (repeatable; the first is the base)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant and round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", type=Path, help="append the result as one JSON line")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    variants = a.variant or [""]
    isa = os.environ.get("ATEN_CPU_CAPABILITY", "default") + "/" + os.environ.get("ONEDNN_MAX_CPU_ISA", "default")
    print(f"demo variants, {a.precision}, ISA {isa}, {torch.get_num_threads()} thread(s), {a.steps} steps × "
          f"{a.rounds} rounds, load {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = []
        for i, v in enumerate(variants):
            tr = Trainer(variant_config(v, a.precision), Path(tmp) / str(i), progress=False)
            for _ in range(a.warmup):
                tr.train_step()
            trainers.append(tr)
        rates: list[list[float]] = [[] for _ in variants]
        for r in range(a.rounds):
            for i, tr in enumerate(trainers):
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    tr.train_step()
                rates[i].append(tr.cfg.train.batch_size * a.steps / (time.perf_counter() - t0))
    rows = []
    for i, v in enumerate(variants):
        ratios = [x / b for x, b in zip(rates[i], rates[0])]
        rows.append({"variant": v or "(demo preset)", "images_per_s": rates[i], "ratio_median": statistics.median(ratios),
                     "ratios": ratios})
        print(f"  {v or '(demo preset)':70s} {statistics.median(rates[i]):6.1f} img/s  ×{statistics.median(ratios):.2f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})", flush=True)
    print(f"load at the end: {load_average()}")
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps({"precision": a.precision, "isa": isa, "threads": torch.get_num_threads(),
                                "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
