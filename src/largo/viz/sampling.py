"""Pictures that sample from a trained network: reverse trajectories, guidance sweeps, sampler comparisons."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

from largo.config import SAMPLERS, RunConfig
from largo.errors import LargoError
from largo.viz.grid import Section, annotated_grid

CFG_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.0)


def open_run(source: str | Path, device: torch.device | str = "cpu", weights: str = "ema"
             ) -> tuple[nn.Module, RunConfig, list[str], Path]:
    """(net, cfg, class names, folder for pictures): the run directory of a run's checkpoint, else ".".
    A missing run, or one without a complete checkpoint, is a LargoError."""
    from largo.train.checkpoint import load_for_sampling, resolve_checkpoint

    ckpt = resolve_checkpoint(source)
    net, cfg, class_names = load_for_sampling(ckpt, device, weights=weights)
    root = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else Path(".")
    return net, cfg, class_names, root


def _settings(cfg: RunConfig, sampler: str | None, steps: int | None, eta: float | None, spacing: str | None,
              cfg_scale: float | None) -> tuple[str, int, float, str, float]:
    s = cfg.sample
    out = (sampler or s.sampler, s.sample_steps if steps is None else steps, s.eta if eta is None else eta,
           spacing or s.spacing, s.cfg if cfg_scale is None else cfg_scale)
    if out[0] not in SAMPLERS:
        raise LargoError(f"unknown sampler {out[0]!r}; valid: {', '.join(SAMPLERS)}")
    if not 1 <= out[1] <= cfg.diffusion.timesteps:
        raise LargoError(f"steps must be in [1, {cfg.diffusion.timesteps}], got {out[1]}")
    if cfg.model.num_classes == 0 and out[4] != 1:
        raise LargoError("this checkpoint is unconditional: classifier-free guidance needs --cfg 1")
    return out


def _fmt_w(w: float) -> str:
    return f"{w:g}"


# -- reverse trajectory ----------------------------------------------------------------------------
def trajectory_length(cfg: RunConfig, sampler: str, steps: int, spacing: str) -> int:
    """How many steps `sample(..., return_trajectory=True)` records for these settings."""
    from largo.diffusion.samplers import heun_intervals
    from largo.diffusion.schedules import NoiseSchedule

    if sampler == "heun":
        return heun_intervals(steps)
    if sampler == "euler":
        return steps
    schedule = NoiseSchedule.make(cfg.diffusion.schedule, cfg.diffusion.timesteps, cfg.diffusion.zero_terminal_snr)
    return len(schedule.timesteps(steps, spacing))


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


@torch.no_grad()
def reverse_trajectory(net: nn.Module, cfg: RunConfig, labels: torch.Tensor, seeds: list[int], *, sampler: str,
                       steps: int, eta: float, spacing: str, cfg_scale: float,
                       device: torch.device | str | None = None) -> tuple[torch.Tensor, list[dict]]:
    """The final float images and the per-step trajectory ({"t", "x_t", "x0_hat"}) of `sample`."""
    from largo.diffusion.denoiser import Denoiser
    from largo.diffusion.samplers import sample
    from largo.diffusion.schedules import NoiseSchedule

    device = torch.device(device) if device is not None else next(net.parameters()).device
    net = net.to(device).eval()
    schedule = NoiseSchedule.make(cfg.diffusion.schedule, cfg.diffusion.timesteps, cfg.diffusion.zero_terminal_snr)
    denoiser = Denoiser(net, schedule, cfg.diffusion.prediction, cfg_scale=cfg_scale,
                        num_classes=cfg.model.num_classes)
    shape = (len(labels), cfg.model.image_channels, cfg.data.resolution, cfg.data.resolution)
    y = labels.to(device) if cfg.model.num_classes else None
    return sample(denoiser, shape, y, sampler=sampler, steps=steps, eta=eta, spacing=spacing, seeds=seeds,
                  device=device, return_trajectory=True)


def trajectory_strip(net: nn.Module, cfg: RunConfig, class_names: list[str], class_index: int, seeds: list[int], *,
                     sampler: str | None = None, steps: int | None = None, every: int | None = None,
                     frames: int | None = None, eta: float | None = None, spacing: str | None = None,
                     cfg_scale: float | None = None, device: torch.device | str | None = None) -> Image.Image:
    """Rows x_t and x̂₀ (per seed), columns every k-th reverse step and the final output."""
    from largo.generate import to_uint8

    sampler, steps, eta, spacing, w = _settings(cfg, sampler, steps, eta, spacing, cfg_scale)
    n = trajectory_length(cfg, sampler, steps, spacing)
    idx = frame_indices(n, every, frames)
    labels = torch.full((len(seeds),), class_index, dtype=torch.long)
    final, traj = reverse_trajectory(net, cfg, labels, seeds, sampler=sampler, steps=steps, eta=eta,
                                     spacing=spacing, cfg_scale=w, device=device)
    heads = [f"step {i + 1}/{n}\nt={traj[i]['t']:.0f}" for i in idx] + ["output\n "]
    sec = Section(f"{class_names[class_index]} · {sampler}, {steps} steps, w={_fmt_w(w)}", heads)
    out = to_uint8(final.cpu())
    for j, s in enumerate(seeds):
        sec.add(f"x_t\nseed {s}", [to_uint8(traj[i]["x_t"][j]) for i in idx] + [out[j]])
        sec.add(f"x̂₀ (predicted)\nseed {s}", [to_uint8(traj[i]["x0_hat"][j]) for i in idx] + [out[j]])
    return annotated_grid([sec])


# -- guidance sweep and sampler comparison ---------------------------------------------------------
def cfg_sweep(net: nn.Module, cfg: RunConfig, class_names: list[str], classes: list[int],
              scales: tuple[float, ...] = CFG_SCALES, per_class: int = 1, seed: int = 0, *,
              sampler: str | None = None, steps: int | None = None, eta: float | None = None,
              spacing: str | None = None, batch_size: int = 64, device: torch.device | str | None = None
              ) -> Image.Image:
    """Rows: classes (× per_class seeds); columns: guidance scale w. A row keeps its seed across w."""
    from largo.generate import generate_images

    if cfg.model.num_classes == 0:
        raise LargoError("a guidance sweep needs a class-conditional checkpoint; this one is unconditional")
    if not scales or any(w < 0 for w in scales):
        raise LargoError("guidance scales must be >= 0")
    sampler, steps, eta, spacing, _ = _settings(cfg, sampler, steps, eta, spacing, 1.0)
    labels = torch.tensor([c for c in classes for _ in range(per_class)], dtype=torch.long)
    seeds = [seed + i for i in range(len(labels))]
    columns = [generate_images(net, cfg, labels, seeds, sampler=sampler, steps=steps, eta=eta, spacing=spacing,
                               cfg_scale=w, batch_size=batch_size, device=device) for w in scales]
    sec = Section(f"guidance sweep · {sampler}, {steps} steps · same seed along a row",
                  [f"w={_fmt_w(w)}" for w in scales])
    for r, c in enumerate(labels.tolist()):
        sec.add(f"{class_names[c]}\nseed {seeds[r]}", [col[r] for col in columns])
    return annotated_grid([sec])


def sampler_grid(net: nn.Module, cfg: RunConfig, class_names: list[str], classes: list[int],
                 samplers: list[str], nfes: list[int], seed: int = 0, *, cfg_scale: float | None = None,
                 eta: float | None = None, spacing: str | None = None, batch_size: int = 64,
                 device: torch.device | str | None = None) -> Image.Image:
    """Rows: sampler × NFE (network evaluations; heun's budget); columns: classes, seed SEED+column in every row."""
    from largo.generate import generate_images

    if not samplers or not nfes:
        raise LargoError("need at least one sampler and one NFE")
    bad = [s for s in samplers if s not in SAMPLERS]
    if bad:
        raise LargoError(f"unknown sampler(s) {', '.join(bad)}; valid: {', '.join(SAMPLERS)}")
    for nfe in nfes:
        _settings(cfg, samplers[0], nfe, eta, spacing, cfg_scale)  # range checks
    _, _, eta, spacing, w = _settings(cfg, None, None, eta, spacing, cfg_scale)
    labels = torch.tensor(classes, dtype=torch.long)
    seeds = [seed + i for i in range(len(labels))]
    sec = Section(f"samplers × NFE · w={_fmt_w(w)} · same seed down a column", [class_names[c] for c in classes])
    for s in samplers:
        for nfe in nfes:
            images = generate_images(net, cfg, labels, seeds, sampler=s, steps=nfe, eta=eta, spacing=spacing,
                                     cfg_scale=w, batch_size=batch_size, device=device)
            sec.add(f"{s}\n{nfe} NFE", list(images))
    return annotated_grid([sec])
