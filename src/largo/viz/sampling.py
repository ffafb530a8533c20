"""Pictures that sample from a trained network: reverse trajectories, guidance sweeps, sampler comparisons."""

from __future__ import annotations

import dataclasses

import torch
from PIL import Image

from largo.config import SAMPLERS
from largo.draw.grid import Section, annotated_grid
from largo.errors import LargoError
from largo.images import to_uint8
from largo.sampling import LoadedModel, SamplingOptions, reverse_trajectory, trajectory_length

CFG_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.0)


def _fmt_w(w: float) -> str:
    return f"{w:g}"


def frame_indices(n_steps: int, every: int | None = None, frames: int | None = None) -> list[int]:
    """Steps to show: every `every`-th from the first, or `frames` evenly spaced from the first to the last."""
    if every is not None and frames is not None:
        raise LargoError("give --every or --frames, not both")
    if frames is not None:
        if not 1 <= frames <= n_steps:
            raise LargoError(f"a trajectory strip of {frames} frames needs at least {frames} sampling steps; this "
                             f"sampler takes {n_steps} (use --frames <= {n_steps} or more --steps)")
        if frames == 1:
            return [0]
        return sorted({round(i * (n_steps - 1) / (frames - 1)) for i in range(frames)})
    every = every if every is not None else max(1, n_steps // 8)
    if not 1 <= every <= n_steps:
        raise LargoError(f"--every {every} must be in [1, {n_steps}], the number of sampling steps")
    return list(range(0, n_steps, every))


def trajectory_strip(model: LoadedModel, class_index: int, seeds: list[int], options: SamplingOptions, *,
                     every: int | None = None, frames: int | None = None,
                     device: torch.device | str | None = None) -> Image.Image:
    """Rows x_t and x̂₀ (per seed), columns every k-th reverse step and the final output."""
    n = trajectory_length(model.cfg, options)
    idx = frame_indices(n, every, frames)
    labels = torch.full((len(seeds),), class_index, dtype=torch.long)
    final, traj = reverse_trajectory(model.net, model.cfg, labels, seeds, options, device=device, latent=model.latent)
    heads = [f"step {i + 1}/{n}\nt={traj[i]['t']:.0f}" for i in idx] + ["output\n "]
    sec = Section(f"{model.class_names[class_index]} · {options.sampler}, {options.steps} steps, "
                  f"w={_fmt_w(options.cfg)}", heads)
    out = to_uint8(final.cpu())
    for j, s in enumerate(seeds):
        sec.add(f"x_t\nseed {s}", [to_uint8(traj[i]["x_t"][j]) for i in idx] + [out[j]])
        sec.add(f"x̂₀ (predicted)\nseed {s}", [to_uint8(traj[i]["x0_hat"][j]) for i in idx] + [out[j]])
    return annotated_grid([sec])


def cfg_sweep(model: LoadedModel, classes: list[int], options: SamplingOptions,
              scales: tuple[float, ...] = CFG_SCALES, per_class: int = 1, seed: int = 0, *, batch_size: int = 64,
              device: torch.device | str | None = None) -> Image.Image:
    """Rows: classes (× per_class seeds); columns: guidance scale w. A row keeps its seed across w."""
    if model.cfg.model.num_classes == 0:
        raise LargoError("a guidance sweep needs a class-conditional checkpoint; this one is unconditional")
    if not scales or any(w < 0 for w in scales):
        raise LargoError("guidance scales must be >= 0")
    labels = torch.tensor([c for c in classes for _ in range(per_class)], dtype=torch.long)
    seeds = [seed + i for i in range(len(labels))]
    columns = [model.generate(labels, seeds, dataclasses.replace(options, cfg=w), batch_size=batch_size,
                              device=device) for w in scales]
    sec = Section(f"guidance sweep · {options.sampler}, {options.steps} steps · same seed along a row",
                  [f"w={_fmt_w(w)}" for w in scales])
    for r, c in enumerate(labels.tolist()):
        sec.add(f"{model.class_names[c]}\nseed {seeds[r]}", [col[r] for col in columns])
    return annotated_grid([sec])


def sampler_grid(model: LoadedModel, classes: list[int], samplers: list[str], nfes: list[int],
                 options: SamplingOptions, seed: int = 0, *, batch_size: int = 64,
                 device: torch.device | str | None = None) -> Image.Image:
    """Rows: sampler × NFE (network evaluations; heun's budget); columns: classes, seed SEED+column in every row.
    `options` gives everything else (guidance, η, spacing)."""
    if not samplers or not nfes:
        raise LargoError("need at least one sampler and one NFE")
    bad = [s for s in samplers if s not in SAMPLERS]
    if bad:
        raise LargoError(f"unknown sampler(s) {', '.join(bad)}; valid: {', '.join(SAMPLERS)}")
    cells = [dataclasses.replace(options, sampler=s, steps=nfe) for s in samplers for nfe in nfes]
    for cell in cells:  # every cell is checked before the first image is drawn
        cell.check(model.cfg.diffusion.timesteps, model.cfg.model.num_classes)
    labels = torch.tensor(classes, dtype=torch.long)
    seeds = [seed + i for i in range(len(labels))]
    sec = Section(f"samplers × NFE · w={_fmt_w(options.cfg)} · same seed down a column",
                  [model.class_names[c] for c in classes])
    for cell in cells:
        images = model.generate(labels, seeds, cell, batch_size=batch_size, device=device)
        sec.add(f"{cell.sampler}\n{cell.steps} NFE", list(images))
    return annotated_grid([sec])
