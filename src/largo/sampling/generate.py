"""Seeded, batched generation of uint8 images from a trained network (used by sample, eval, viz, sweep and
training's sample grids), and the reverse trajectory of a few samples for pictures."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from PIL import Image
from torch import nn

from largo.autoencoder.latents import LatentSpace
from largo.config import RunConfig
from largo.diffusion.denoiser import Denoiser
from largo.diffusion.samplers import heun_intervals, sample
from largo.diffusion.schedules import NoiseSchedule
from largo.draw.grid import labelled_grid
from largo.images import to_uint8
from largo.runtime import DistInfo, sampling_autocast
from largo.sampling.classes import grid_classes
from largo.sampling.guide import load_guide
from largo.sampling.options import SamplingOptions


def make_denoiser(net: nn.Module, cfg: RunConfig, options: SamplingOptions) -> Denoiser:
    """The denoiser of these options: CFG, or autoguidance by the `guide_with` model (loaded once, checked)."""
    guide = None
    if options.guide_with:
        guide_net, guide_cfg = load_guide(options.guide_with, cfg, next(net.parameters()).device)
        guide = Denoiser(guide_net, NoiseSchedule.from_config(guide_cfg.diffusion), guide_cfg.diffusion.prediction,
                         num_classes=guide_cfg.model.num_classes, sigma_data=guide_cfg.diffusion.sigma_data)
    return Denoiser(net, NoiseSchedule.from_config(cfg.diffusion), cfg.diffusion.prediction,
                    cfg_scale=options.cfg, cfg_interval=options.cfg_interval, num_classes=cfg.model.num_classes,
                    sigma_data=cfg.diffusion.sigma_data, guide=guide)


def image_shape(cfg: RunConfig) -> tuple[int, int, int]:
    """(C, H, W) of what the network generates: images, or latents for latent diffusion."""
    return cfg.model.image_channels, cfg.net_size, cfg.net_size


@torch.no_grad()
def generate_images(net: nn.Module, run_cfg: RunConfig, labels: torch.Tensor, seeds: list[int] | None = None,
                    options: SamplingOptions | None = None, *, batch_size: int = 64,
                    device: torch.device | str | None = None, progress: bool = False,
                    dist_info: DistInfo | None = None, latent: LatentSpace | None = None,
                    callback: Callable[[int, int], None] | None = None, **overrides) -> torch.Tensor:
    """Images (uint8, N×C×H×W) for `labels`; image i is drawn from seed `seeds[i]` (default i), so it does not
    depend on the batch size or on how many processes share the work. `options` (or keyword `overrides` in
    SamplingOptions' names, such as steps=10 or cfg=3, resolved against `run_cfg.sample`) say how to sample. With
    `dist_info` of several processes, rank r draws images r, r+W, … and every rank returns all N images in order.
    A latent model (`latent`, its latent space) samples latents and hands out their decoded pixels.
    `callback(done, total)` follows the sampler's steps over all batches (one process; raising there stops)."""
    options = options or SamplingOptions.resolve(run_cfg, **overrides)
    seeds = list(range(len(labels))) if seeds is None else list(seeds)
    if len(seeds) != len(labels):
        raise ValueError("need one seed per label")
    if dist_info is not None and dist_info.enabled:
        return _generate_sharded(net, run_cfg, labels, seeds, options, batch_size, device, progress, dist_info, latent)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    net = net.to(device).eval()
    denoiser = make_denoiser(net, run_cfg, options)
    amp = sampling_autocast(device, options.precision)
    out = []
    batches = -(-len(labels) // batch_size)
    for b, i in enumerate(range(0, len(labels), batch_size)):
        y = labels[i:i + batch_size].to(device)
        step = None if callback is None else lambda done, n, b=b: callback(b * n + done, batches * n)
        with amp:
            x = sample(denoiser, (len(y), *image_shape(run_cfg)), y, sampler=options.sampler, steps=options.steps,
                       eta=options.eta, spacing=options.spacing, seeds=seeds[i:i + batch_size], device=device,
                       progress=progress, clip_x0=options.clip_x0, callback=step)
        out.append(to_uint8(latent.decode(x, batch_size) if latent is not None else x).cpu())
    return torch.cat(out)


def _generate_sharded(net, cfg, labels, seeds, options, batch_size, device, progress, dist_info, latent
                      ) -> torch.Tensor:
    mine = list(range(dist_info.rank, len(labels), dist_info.world))
    local = generate_images(net, cfg, labels[mine], [seeds[i] for i in mine], options, batch_size=batch_size,
                            device=device, progress=progress and dist_info.is_main, latent=latent)
    parts: list = [None] * dist_info.world
    dist.all_gather_object(parts, (mine, local))
    out = torch.empty((len(labels), *local.shape[1:]), dtype=torch.uint8)
    for index, images in parts:
        out[index] = images
    return out


def class_grid(net: nn.Module, cfg: RunConfig, class_names: list[str], per_class: int = 8,
               classes: list[int] | None = None, seed: int = 0, device: torch.device | str | None = None,
               options: SamplingOptions | None = None, batch_size: int = 64, latent: LatentSpace | None = None,
               **overrides) -> Image.Image:
    """One row per class, names on the left; image i uses seed SEED+i."""
    classes = grid_classes(len(class_names)) if classes is None else classes
    labels = torch.tensor([c for c in classes for _ in range(per_class)], dtype=torch.long)
    seeds = [seed + i for i in range(len(labels))]
    images = generate_images(net, cfg, labels, seeds, options, device=device, batch_size=batch_size, latent=latent,
                             **overrides)
    return labelled_grid(images, per_class, [class_names[c] for c in classes])


# -- reverse trajectories (pictures) --------------------------------------------------------------------------
def trajectory_length(cfg: RunConfig, options: SamplingOptions) -> int:
    """How many steps `sample(..., return_trajectory=True)` records for these options."""
    if options.sampler == "heun":
        return heun_intervals(options.steps)
    if options.sampler == "euler":
        return options.steps
    return len(NoiseSchedule.from_config(cfg.diffusion).timesteps(options.steps, options.spacing))


@torch.no_grad()
def reverse_trajectory(net: nn.Module, cfg: RunConfig, labels: torch.Tensor, seeds: list[int],
                       options: SamplingOptions, device: torch.device | str | None = None,
                       latent: LatentSpace | None = None) -> tuple[torch.Tensor, list[dict]]:
    """The final float images and the per-step trajectory ({"t", "x_t", "x0_hat"}) of `sample`; for a latent
    model every frame is decoded to pixels."""
    device = torch.device(device) if device is not None else next(net.parameters()).device
    net = net.to(device).eval()
    y = labels.to(device) if cfg.model.num_classes else None
    final, trajectory = sample(make_denoiser(net, cfg, options), (len(labels), *image_shape(cfg)), y,
                               sampler=options.sampler, steps=options.steps, eta=options.eta, spacing=options.spacing,
                               seeds=seeds, device=device, return_trajectory=True, clip_x0=options.clip_x0)
    if latent is None:
        return final, trajectory
    frames = [{**f, "x_t": latent.decode(f["x_t"]), "x0_hat": latent.decode(f["x0_hat"])} for f in trajectory]
    return latent.decode(final), frames
