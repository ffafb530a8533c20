"""Convergence of the deterministic samplers to the exact probability-flow ODE solution of one checkpoint.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/solver_convergence.py [--checkpoint checkpoints/fashion_mnist-32-cpu]
        [--n 8] [--cfg 3] [--nfe 5,10,20,40,80] [--ref-nfe 799]

The reference is Heun at `--ref-nfe` evaluations (400 σ-intervals). For each sampler and NFE budget the RMSE of the
final images (in [-1, 1] units, no clipping) against it is printed, and the observed order: log2 of the error
ratio when the budget doubles (≈ 1 for a first-order solver, ≈ 2 for second order). Same seeds everywhere. This
separates "the solver is wrong" from "the solver is right but its error at few steps hurts the samples": a
sampler can converge at its nominal order and still score worse at a small budget (docs/SAMPLERS.md).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from largo.diffusion.denoiser import Denoiser
from largo.diffusion.samplers import heun_intervals, sample
from largo.diffusion.schedules import NoiseSchedule
from largo.sampling import load_model

ODE_SAMPLERS = ("ddim", "dpmpp2m", "dpmpp3m", "euler", "heun")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/fashion_mnist-32-cpu")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--cfg", type=float, default=3.0)
    p.add_argument("--nfe", default="5,10,20,40,80")
    p.add_argument("--ref-nfe", type=int, default=799)
    p.add_argument("--samplers", default=",".join(ODE_SAMPLERS))
    a = p.parse_args(argv)
    model = load_model(a.checkpoint)
    net, cfg, _ = model.net, model.cfg, model.class_names
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    den = Denoiser(net, schedule, cfg.diffusion.prediction, cfg_scale=a.cfg, num_classes=cfg.model.num_classes)
    k = max(cfg.model.num_classes, 1)
    labels = torch.arange(a.n) % k
    shape = (a.n, cfg.model.image_channels, cfg.data.resolution, cfg.data.resolution)
    run = lambda s, nfe: sample(den, shape, labels, sampler=s, steps=nfe, seeds=list(range(a.n)))  # noqa: E731
    t0 = time.perf_counter()
    ref = run("heun", a.ref_nfe)
    print(f"reference: heun, {a.ref_nfe} NFE ({heun_intervals(a.ref_nfe)} intervals), {a.n} images, cfg {a.cfg:g}, "
          f"{time.perf_counter() - t0:.0f} s; checkpoint {a.checkpoint}")
    nfes = [int(x) for x in a.nfe.split(",")]
    print("\n| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " | observed order |")
    print("|---|" + "|".join("---:" for _ in nfes) + "|---:|")
    for s in a.samplers.split(","):
        errs = [(run(s, n) - ref).pow(2).mean().sqrt().item() for n in nfes]
        orders = [math.log2(e0 / e1) for e0, e1 in zip(errs, errs[1:]) if e1 > 0]
        print(f"| {s} | " + " | ".join(f"{e:.4f}" for e in errs) + " | "
              + ", ".join(f"{o:.1f}" for o in orders) + " |", flush=True)


if __name__ == "__main__":
    main()
