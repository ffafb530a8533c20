"""Training throughput of the real `Trainer.train_step` (loss, backward, clip, fused AdamW, EMA, one host sync)
for the Flowers-102 64×64 model on synthetic data of the dataset's shape (8,189 images, 102 classes), so it runs
without the dataset.

    python benchmarks/records/train_throughput.py --out results.jsonl \
        --settings "1,2,3,4:256:bf16:cl:eager" "1,2,3,4:256:bf16:cl:compile" ... [--deadline 150]

Each setting is CHANNEL_MULT:BATCH:PRECISION:cl|nocl:eager|compile|eager-bench (eager-bench = eager with
cudnn.benchmark). One JSON line per setting: images/s over the timed steps, the first steps' times (compile
time for compiled ones), peak memory. Settings that would start after --deadline seconds are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

import largo.train.trainer as trainer_mod
from largo.config import preset_config
from largo.data.datasets import ImageSet


def fake_images(resolution: int) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8189, 3, resolution, resolution), dtype=torch.uint8, generator=g)
    labels = torch.arange(8189) % 102
    return ImageSet(images, labels, [f"class{i}" for i in range(102)])


def run_setting(spec: str, warm: int, timed: int, device: str = "cuda") -> dict:
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    mult, batch, precision, layout, mode = spec.split(":")
    torch.backends.cudnn.benchmark = mode == "eager-bench"
    cfg = preset_config("flowers64")
    cfg.model = dataclasses.replace(cfg.model, channel_mult=tuple(int(m) for m in mult.split(",")))
    cfg.train = dataclasses.replace(cfg.train, batch_size=int(batch), precision=precision, device=device,
                                    channels_last=layout == "cl", compile=mode == "compile", lr=3e-4,
                                    lr_warmup=500, ema_decay=0.9995)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        tr = trainer_mod.Trainer(cfg, Path(tmp), progress=False, data=fake_images(cfg.data.resolution))
        params = sum(p.numel() for p in tr.net.parameters())
        first = []
        for _ in range(warm):
            sync()
            t0 = time.perf_counter()
            tr.train_step()
            sync()
            first.append(round(time.perf_counter() - t0, 3))
        sync()
        t0 = time.perf_counter()
        for _ in range(timed):
            tr.train_step()
        sync()
        dt = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0
        del tr
    if cuda:
        torch.cuda.empty_cache()
    return {"setting": spec, "params": params, "batch_size": int(batch), "images_per_s": int(batch) * timed / dt,
            "step_ms": 1000 * dt / timed, "timed_steps": timed, "first_steps_s": first, "peak_mem_mb": round(peak),
            "device": torch.cuda.get_device_name() if cuda else device, "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--settings", nargs="+", required=True)
    p.add_argument("--warm", type=int, default=4)
    p.add_argument("--timed", type=int, default=25)
    p.add_argument("--deadline", type=float, default=1e9)
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    start = time.time()
    for spec in a.settings:
        if time.time() - start > a.deadline:
            print(f"skipped {spec} (deadline)", flush=True)
            continue
        try:
            r = run_setting(spec, a.warm, a.timed, a.device)
        except Exception as e:  # noqa: BLE001 - one failed setting must not lose the others
            r = {"setting": spec, "error": f"{type(e).__name__}: {str(e)[:500]}"}
        print(json.dumps(r), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
