"""SIGKILL a small CPU training run at random moments, resume it each time, and compare the final weights
bit for bit with a run that was never interrupted.

Both runs are `largo train` subprocesses with the same tiny config (CLI flags): a 0.17 M-parameter U-Net at
8x8 on a synthetic 4-class folder dataset, dropout, label dropout, class-balanced sampling, flips, LR warm-up
and a cosine schedule, so every RNG and schedule the checkpoint must restore is in play. Checkpoints every 2
steps, so many kills land while a checkpoint is being written. Each segment is killed at a random time
(uniform in [0, --max-delay] s) after it has written its first new checkpoint, then resumed with
`largo train --resume RUN`. At the end every tensor of model.safetensors and ema.safetensors is compared with
torch.equal, and log.jsonl must hold each step exactly once.

Usage:  .venv/bin/python benchmarks/kill_resume.py [--kills 12] [--steps 400] [--seed 0] [--workdir DIR]
About 1.5 min on 2 CPU cores (most of it is 14 process start-ups). Exit code 0 when the weights are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

PY = sys.executable
TINY = ["--resolution", "8", "--base-channels", "32", "--channel-mult", "1", "--num-res-blocks", "1",
        "--attention-resolutions", "", "--num-heads", "1", "--dropout", "0.1", "--p-uncond", "0.1",
        "--batch-size", "4", "--timesteps", "100", "--lr", "1e-3", "--lr-warmup", "10", "--lr-schedule", "cosine",
        "--ema-decay", "0.99", "--balanced", "true", "--hflip", "true", "--sample-steps", "3",
        "--grid-per-class", "1", "--device", "cpu", "--log-every", "1", "--keep", "2", "--quiet"]


def make_folder(root: Path, classes: int = 4, per_class: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / f"class{c}" / f"{i:03d}.png")
    return root


def step_of(run: Path) -> int:
    """Step of the checkpoint `--resume` would load (-1: none); reads only what the trainer publishes."""
    try:
        name = (run / "checkpoints" / "latest").read_text().strip()
        return int(json.loads((run / "checkpoints" / name / "meta.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return -1


def weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    return {f: load_file(str(ckpt / f)) for f in ("model.safetensors", "ema.safetensors")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--checkpoint-every", type=int, default=2)
    ap.add_argument("--max-delay", type=float, default=0.4, help="seconds after the segment's first new checkpoint")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times (the training seed is fixed)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every run")
    ap.add_argument("--workdir", type=Path, help="default: a temporary folder, removed afterwards")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="largo-kill-resume-"))
    shutil.rmtree(work / "ref", ignore_errors=True)
    shutil.rmtree(work / "killed", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    # One intra-op thread: both runs must use the same thread count for bitwise equality, and on a shared 2-core
    # machine a second OpenMP thread waiting for a busy core slows these tiny convolutions ~100x.
    env = {**os.environ, "LARGO_CACHE": str(work / "cache"), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    data = make_folder(work / "data")
    flags = ["--dataset", f"folder:{data}", *TINY, "--steps", str(args.steps), "--max-minutes", "4",
             "--checkpoint-every", str(args.checkpoint_every)]
    t_start = time.time()

    ref = work / "ref"
    t0 = time.time()
    r = subprocess.run([PY, "-m", "largo", "train", *flags, "--run-dir", str(ref)], cwd=work, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    print(f"uninterrupted run: {args.steps} steps in {time.time() - t0:.1f} s")

    run = work / "killed"
    rng = random.Random(args.seed)
    kills = []
    while len(kills) < args.kills:
        start = step_of(run)
        cmd = ["train", *flags, "--run-dir", str(run)] if start < 0 else ["train", "--resume", str(run), "--quiet"]
        proc = subprocess.Popen([PY, "-m", "largo", *cmd], cwd=work, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while step_of(run) <= start and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        if proc.poll() is not None:
            print(f"the run ended before kill {len(kills) + 1} (rc {proc.returncode}); use more --steps",
                  file=sys.stderr)
            print(proc.stderr.read()[-2000:], file=sys.stderr)
            return 1
        delay = rng.uniform(0, args.max_delay)
        time.sleep(delay)
        if proc.poll() is not None:
            print(f"the run ended before kill {len(kills) + 1}; use more --steps", file=sys.stderr)
            return 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        partial = sorted(p.name for p in (run / "checkpoints").glob(".step_*.tmp-*"))
        kills.append({"resumed_from": max(start, 0), "delay_s": delay, "latest_after_kill": step_of(run),
                      "mid_checkpoint_write": bool(partial)})
        k = kills[-1]
        print(f"kill {len(kills):2d}: segment started at step {k['resumed_from']:3d}, SIGKILL {delay:.3f} s after "
              f"its first checkpoint; resume point: step {k['latest_after_kill']:3d}"
              f"{'  (killed while writing a checkpoint)' if partial else ''}", flush=True)

    final = subprocess.run([PY, "-m", "largo", "train", "--resume", str(run), "--quiet"], cwd=work, env=env,
                           capture_output=True, text=True)
    if final.returncode != 0:
        print(final.stderr, file=sys.stderr)
        return 1
    a, b = weights(ref), weights(run)
    compared = sum(len(t) for t in a.values())
    differing = [f"{f}:{k}" for f in a for k in a[f] if k not in b[f] or not torch.equal(a[f][k], b[f][k])]
    differing += [f"{f}:{k}" for f in b for k in b[f] if k not in a[f]]
    logged = [json.loads(ln)["step"] for ln in (run / "log.jsonl").read_text().splitlines() if ln.strip()]
    log_ok = logged == list(range(1, args.steps + 1))
    mid_write = sum(k["mid_checkpoint_write"] for k in kills)
    ok = not differing and log_ok and step_of(run) == args.steps
    print(f"\nSIGKILLs: {len(kills)} ({mid_write} while a checkpoint was being written), resumed {len(kills)} times; "
          f"final step {step_of(run)}/{args.steps}")
    print(f"tensors compared (model + EMA): {compared}; bitwise different: {len(differing)}"
          f"{' ' + ', '.join(differing[:5]) if differing else ''}")
    print(f"log.jsonl: {len(logged)} lines, each step once: {'yes' if log_ok else 'NO'}")
    print(f"result: {'IDENTICAL' if ok else 'MISMATCH'} ({time.time() - t_start:.0f} s)")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
