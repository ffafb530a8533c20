"""Seeded, batched generation of uint8 images from a trained network (used by sample, eval, viz, training)."""

from __future__ import annotations

import contextlib

import torch
from PIL import Image
from torch import nn

from largo.config import SAMPLE_PRECISIONS, RunConfig
from largo.diffusion.denoiser import Denoiser
from largo.diffusion.samplers import sample
from largo.diffusion.schedules import NoiseSchedule
from largo.errors import LargoError
from largo.train.distributed import DistInfo


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats → uint8 [0, 255]."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def sampling_autocast(device: torch.device, precision: str):
    """The network's precision while sampling; the sampler's own arithmetic stays in float32/64 either way.
    auto: bf16 on CUDA GPUs that support it, else fp32. bf16 on CPU uses autocast (fast where the CPU has
    AMX/AVX512-BF16, e.g. 1.8x here; slower elsewhere)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise LargoError("sample_precision bf16: this GPU does not support bfloat16; use fp32")
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise LargoError(f"unknown sample_precision {precision!r}; valid: {', '.join(SAMPLE_PRECISIONS)}")


@torch.no_grad()
def generate_images(net: nn.Module, cfg: RunConfig, labels: torch.Tensor, seeds: list[int] | None = None, *,
                    sampler: str | None = None, steps: int | None = None, eta: float | None = None,
                    cfg_scale: float | None = None, spacing: str | None = None,
                    cfg_interval: tuple[int, int] | None = None, clip_x0: bool | None = None,
                    precision: str | None = None, batch_size: int = 64,
                    device: torch.device | str | None = None, progress: bool = False,
                    dist_info: DistInfo | None = None) -> torch.Tensor:
    """Images (uint8, N×C×H×W) for `labels`; image i is drawn from seed `seeds[i]` (default i), so it does not
    depend on the batch size or on how many processes share the work. Unset sampling options come from
    `cfg.sample`. With `dist_info` of several processes, rank r draws images r, r+W, … and every rank returns
    all N images in order (no image drawn twice, none missing)."""
    seeds = list(range(len(labels))) if seeds is None else list(seeds)
    if dist_info is not None and dist_info.enabled:
        import torch.distributed as dist

        mine = list(range(dist_info.rank, len(labels), dist_info.world))
        local = generate_images(net, cfg, labels[mine], [seeds[i] for i in mine], sampler=sampler, steps=steps,
                                eta=eta, cfg_scale=cfg_scale, spacing=spacing, cfg_interval=cfg_interval,
                                clip_x0=clip_x0, precision=precision, batch_size=batch_size, device=device, progress=progress and dist_info.is_main)
        parts: list = [None] * dist_info.world
        dist.all_gather_object(parts, (mine, local))
        out = torch.empty((len(labels), *local.shape[1:]), dtype=torch.uint8)
        for index, images in parts:
            out[index] = images
        return out
    s = cfg.sample
    device = torch.device(device) if device is not None else next(net.parameters()).device
    net = net.to(device).eval()
    if len(seeds) != len(labels):
        raise ValueError("need one seed per label")
    schedule = NoiseSchedule.make(cfg.diffusion.schedule, cfg.diffusion.timesteps, cfg.diffusion.zero_terminal_snr)
    denoiser = Denoiser(net, schedule, cfg.diffusion.prediction, cfg_scale=s.cfg if cfg_scale is None else cfg_scale,
                        cfg_interval=cfg_interval, num_classes=cfg.model.num_classes)
    shape_chw = (cfg.model.image_channels, cfg.data.resolution, cfg.data.resolution)
    amp = sampling_autocast(device, s.sample_precision if precision is None else precision)
    out = []
    for i in range(0, len(labels), batch_size):
        y = labels[i:i + batch_size].to(device)
        with amp:
            x = sample(denoiser, (len(y), *shape_chw), y, sampler=sampler or s.sampler,
                       steps=steps or s.sample_steps, eta=s.eta if eta is None else eta,
                       spacing=spacing or s.spacing, seeds=seeds[i:i + batch_size], device=device,
                       progress=progress, clip_x0=s.clip_x0 if clip_x0 is None else clip_x0)
        out.append(to_uint8(x).cpu())
    return torch.cat(out)


def grid_classes(num_classes: int, max_rows: int = 16) -> list[int]:
    """All classes when they fit, else `max_rows` spread evenly over the label range."""
    if num_classes <= max_rows:
        return list(range(num_classes))
    return sorted({round(i * (num_classes - 1) / (max_rows - 1)) for i in range(max_rows)})


def class_grid(net: nn.Module, cfg: RunConfig, class_names: list[str], per_class: int = 8,
               classes: list[int] | None = None, seed: int = 0, device: torch.device | str | None = None,
               **sampling) -> Image.Image:
    """One row per class, names on the left."""
    from largo.viz.grid import labelled_grid

    classes = grid_classes(len(class_names)) if classes is None else classes
    labels = torch.tensor([c for c in classes for _ in range(per_class)], dtype=torch.long)
    seeds = [seed + i for i in range(len(labels))]
    images = generate_images(net, cfg, labels, seeds, device=device, **sampling)
    return labelled_grid(images, per_class, [class_names[c] for c in classes])
