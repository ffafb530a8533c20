"""Loading a diffusion network from what the user typed, and the guide model of autoguidance (`--guide-with`):
a weaker network of the same data, resolution, classes and noise schedule (Karras et al. 2024)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from largo.checkpoint import load_weights, read_meta, resolve_checkpoint
from largo.config import RunConfig
from largo.errors import LargoError
from largo.models import build_unet

WEIGHT_FILES = {"ema": "ema.safetensors", "online": "model.safetensors"}


def load_network(source: str | Path, device: torch.device | str = "cpu", weights: str = "ema"
                 ) -> tuple[nn.Module, RunConfig, Path, dict]:
    """(network in eval mode on `device`, its config, checkpoint folder, meta) of a run directory (its latest
    checkpoint), a checkpoint folder or a released checkpoint's name."""
    if weights not in WEIGHT_FILES:
        raise LargoError(f"unknown weights {weights!r}; valid: {', '.join(WEIGHT_FILES)}")
    ckpt = resolve_checkpoint(source)
    meta = read_meta(ckpt)
    if meta.get("kind", "diffusion") != "diffusion":
        raise LargoError(f"{ckpt} holds an {meta['kind']} model, not a diffusion model to sample from "
                         f"(see `largo autoencoder eval`)")
    try:
        cfg = RunConfig.from_dict(meta["config"]).validate(strict=False)
    except LargoError as e:
        raise LargoError(f"checkpoint {ckpt} has an unusable config ({e})") from None
    if cfg.model.image_channels < 1:
        raise LargoError(f"checkpoint {ckpt} records no image_channels in its config")
    net = build_unet(cfg.model, cfg.net_size)
    load_weights(net, ckpt / WEIGHT_FILES[weights])
    return net.to(device).eval(), cfg, ckpt, meta


def check_guide(cfg: RunConfig, guide_cfg: RunConfig, where: str) -> None:
    """One line if the guide cannot guide the model: another dataset, resolution, channels, classes or schedule."""
    pairs = {"dataset": (cfg.data.dataset, guide_cfg.data.dataset),
             "resolution": (cfg.net_size, guide_cfg.net_size),
             "image channels": (cfg.model.image_channels, guide_cfg.model.image_channels),
             "classes": (cfg.model.num_classes, guide_cfg.model.num_classes),
             "latent space": (cfg.data.autoencoder or "none (pixels)", guide_cfg.data.autoencoder or "none (pixels)"),
             "noise schedule": ((cfg.diffusion.schedule, cfg.diffusion.timesteps, cfg.diffusion.zero_terminal_snr),
                                (guide_cfg.diffusion.schedule, guide_cfg.diffusion.timesteps,
                                 guide_cfg.diffusion.zero_terminal_snr))}
    for what, (mine, theirs) in pairs.items():
        if mine != theirs:
            raise LargoError(f"--guide-with {where}: the guide model's {what} is {theirs}, the model's {mine}; "
                             "autoguidance needs a weaker model of the same data")
    if cfg.model.num_classes == 0:
        raise LargoError("--guide-with needs a class-conditional model")


@functools.lru_cache(maxsize=2)
def _cached_guide(source: str, device: str) -> tuple[nn.Module, RunConfig]:
    net, cfg, _, _ = load_network(source, device)
    return net, cfg


def load_guide(source: str, cfg: RunConfig, device: torch.device | str) -> tuple[nn.Module, RunConfig]:
    """The guide's network (EMA weights, cached by source and device) and config, checked against `cfg`."""
    net, guide_cfg = _cached_guide(str(source), str(torch.device(device)))
    check_guide(cfg, guide_cfg, str(source))
    return net, guide_cfg
