"""Training and sampling throughput of the presets on this machine (synthetic data of each dataset's shape).

    python benchmarks/throughput.py                                  # demo, fashion32, flowers64 on the CPU
    python benchmarks/throughput.py --presets fashion32 --batch fashion32=64 --precision bf16
    python benchmarks/throughput.py --device cuda --channels-last --compile   # GPU: preset batch sizes

Training: the real `Trainer.train_step` (diffusion loss, backward, grad clip, AdamW — fused on CUDA, foreach on
the CPU —, EMA update, one host sync), after `--warmup` untimed steps; images/s = batch × steps / seconds.

Sampling: `largo.sampling.generate_images` from the EMA network with DDIM and classifier-free guidance (cfg 3),
so every step is ONE network forward of 2B images (conditional + unconditional), i.e. NFE = steps. A short
DDIM run of `--sample-steps` steps is timed after a one-step warm-up; since every DDIM step costs the same,
images/s at the preset's own step count (e.g. 50) is the measured time per step × that count, shown beside.

The absolute numbers depend on everything else running on the machine; compare settings only within one run of
this script (and see benchmarks/unet_vs_diffusers.py for an interleaved A/B comparison). On a CPU shared with
other jobs, `--threads 1` (or OMP_WAIT_POLICY=PASSIVE) avoids OpenMP threads spinning against each other, which
can make small models several times slower; see docs/SPEED.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import load_average, sync, synthetic_images
from largo.config import preset_config
from largo.models import count_parameters
from largo.runtime import resolve_device
from largo.sampling import generate_images
from largo.train import Trainer

# Image channels and classes of each preset's dataset, so no dataset is needed.
DATASET_SHAPES = {"flowers102": (3, 102), "fashion_mnist": (1, 10), "mnist": (1, 10), "cifar10": (3, 10)}
# Batch sizes that keep the whole CPU run near 2-3 minutes on 2 cores; on a GPU the presets' own batch sizes.
CPU_BATCH = {"demo": 64, "fashion32": 32, "flowers64": 8}


def measure(preset: str, batch: int, a: argparse.Namespace) -> dict:
    cfg = preset_config(preset)
    channels, classes = DATASET_SHAPES[cfg.data.dataset]
    res = cfg.data.resolution
    data = synthetic_images(channels, classes, res, max(4 * batch, 256))
    cfg.train = dataclasses.replace(cfg.train, batch_size=batch, device=a.device, precision=a.precision,
                                    channels_last=a.channels_last, compile=a.compile, steps=10**6,
                                    max_minutes=0.0, checkpoint_every=10**6, lr_warmup=0)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, Path(tmp), progress=False, data=data)
        device = tr.device
        params = count_parameters(tr.net)
        t0 = time.perf_counter()
        for _ in range(a.warmup):
            tr.train_step()
        sync(device)
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(a.train_steps):
            tr.train_step()
        sync(device)
        train_s = time.perf_counter() - t0

        s = tr.cfg.sample
        labels = torch.arange(batch) % classes
        kw = dict(sampler="ddim", eta=0.0, cfg=s.cfg, batch_size=batch, device=device)
        generate_images(tr.ema.net, tr.cfg, labels, steps=1, **kw)  # warm-up (eval mode, allocations)
        sync(device)
        t0 = time.perf_counter()
        generate_images(tr.ema.net, tr.cfg, labels, steps=a.sample_steps, **kw)
        sync(device)
        sample_s = time.perf_counter() - t0
        amp = str(tr.amp_dtype).replace("torch.", "")
    per_step = sample_s / a.sample_steps
    guided = s.cfg != 1.0
    return {
        "preset": preset, "device": str(device), "params": params, "input": f"{channels}×{res}×{res}",
        "classes": classes, "batch": batch, "precision": amp, "channels_last": a.channels_last,
        "compile": a.compile, "warmup_s": round(warm_s, 2),
        "train_steps": a.train_steps, "train_images_per_s": batch * a.train_steps / train_s,
        "sample_sampler": "ddim", "sample_cfg": s.cfg, "sample_forward_batch": 2 * batch if guided else batch,
        "sample_nfe_timed": a.sample_steps, "sample_images_per_s": batch / sample_s,
        "sample_s_per_step": per_step, "preset_nfe": s.sample_steps,
        "sample_images_per_s_at_preset_nfe": batch / (per_step * s.sample_steps),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["demo", "fashion32", "flowers64"])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batch", nargs="*", default=[], metavar="PRESET=N",
                   help="batch size per preset (default: CPU " + ", ".join(f"{k}={v}" for k, v in CPU_BATCH.items())
                        + "; GPU: the preset's batch_size)")
    p.add_argument("--precision", default="auto", help="auto (bf16 on GPUs that have it, fp32 on the CPU) | fp32 | bf16")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward (slow first steps)")
    p.add_argument("--warmup", type=int, default=1, help="untimed training steps (more with --compile)")
    p.add_argument("--train-steps", type=int, default=3, help="timed training steps")
    p.add_argument("--sample-steps", type=int, default=3, help="timed DDIM steps (NFE)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", type=Path, help="append one JSON line per preset")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    overrides = {}
    for item in a.batch:
        name, _, n = item.partition("=")
        overrides[name] = int(n)
    device = resolve_device(a.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), torch "
          f"{torch.__version__}, {torch.get_num_threads()} CPU threads, load average {load_average()}; {a.warmup} warm-up "
          f"step(s) excluded",
          flush=True)
    rows = []
    for preset in a.presets:
        batch = overrides.get(preset) or (CPU_BATCH.get(preset, 32) if device.type == "cpu"
                                          else preset_config(preset).train.batch_size)
        t0 = time.perf_counter()
        r = measure(preset, batch, a)
        rows.append(r)
        print(f"{preset:10s} {r['input']:8s} {r['params'] / 1e6:6.2f} M params  batch {batch:4d}  {r['precision']}"
              f"{' +channels_last' if r['channels_last'] else ''}{' +compile' if r['compile'] else ''}  "
              f"train {r['train_images_per_s']:8.1f} img/s  |  DDIM cfg {r['sample_cfg']:g} (forward of "
              f"{r['sample_forward_batch']}/step), NFE {a.sample_steps}: {r['sample_images_per_s']:8.2f} img/s, "
              f"{r['sample_s_per_step'] * 1000:.0f} ms/step → {r['sample_images_per_s_at_preset_nfe']:.2f} img/s at "
              f"NFE {r['preset_nfe']}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    print("\n| preset | input | params | batch | precision | train img/s | sample img/s (DDIM, NFE timed) "
          "| ms per guided step | sample img/s at preset NFE |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['input']} | {r['params'] / 1e6:.2f} M | {r['batch']} | {r['precision']} | "
              f"{r['train_images_per_s']:.1f} | {r['sample_images_per_s']:.2f} (NFE {r['sample_nfe_timed']}) | "
              f"{r['sample_s_per_step'] * 1000:.0f} | {r['sample_images_per_s_at_preset_nfe']:.2f} "
              f"(NFE {r['preset_nfe']}) |")
    print(f"\nload average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
