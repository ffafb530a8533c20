"""A trained model ready to sample from: network, config, class names and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from largo.autoencoder.latents import LatentSpace, latent_space_from_record
from largo.checkpoint import load_weights, read_meta, resolve_checkpoint, run_root
from largo.config import RunConfig
from largo.errors import LargoError
from largo.models import build_unet
from largo.sampling.generate import generate_images
from largo.sampling.options import SamplingOptions

WEIGHT_FILES = {"ema": "ema.safetensors", "online": "model.safetensors"}


@dataclass
class LoadedModel:
    net: nn.Module
    cfg: RunConfig
    class_names: list[str]
    checkpoint: Path  # the checkpoint folder the weights came from
    meta: dict
    latent: LatentSpace | None = None  # latent diffusion: the autoencoder and normalisation it samples through

    @property
    def run_dir(self) -> Path | None:
        """The run directory of a run's checkpoint; None for a released checkpoint or an export."""
        return run_root(self.checkpoint)

    @property
    def image_channels(self) -> int:
        """Channels of the images it hands out (for a latent model, the autoencoder's, not the latents')."""
        return self.latent.autoencoder.image_channels if self.latent is not None else self.cfg.model.image_channels

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    def generate(self, labels: torch.Tensor, seeds: list[int] | None = None, options: SamplingOptions | None = None,
                 **kwargs) -> torch.Tensor:
        """uint8 images of this model (`generate_images` with its network, config and latent space)."""
        return generate_images(self.net, self.cfg, labels, seeds, options, latent=self.latent, **kwargs)


def load_model(source: str | Path, device: torch.device | str = "cpu", weights: str = "ema") -> LoadedModel:
    """Load a run directory (its latest checkpoint), a checkpoint folder or a released checkpoint's name, with
    its EMA (default) or online weights, in eval mode on `device`."""
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
    class_names = meta.get("class_names") or [str(i) for i in range(cfg.model.num_classes)]
    latent = latent_space_from_record(meta["latent"], device, base=ckpt) if meta.get("latent") else None
    return LoadedModel(net.to(device).eval(), cfg, class_names, ckpt, meta, latent)

