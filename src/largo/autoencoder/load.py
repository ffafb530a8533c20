"""An autoencoder by what the user types: a largo autoencoder run, checkpoint folder or export, or a diffusers
`AutoencoderKL` folder (`save_pretrained`), loaded offline and identified by the sha256 of its weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from largo.checkpoint import load_weights, read_meta, resolve_checkpoint
from largo.config import AutoencoderRunConfig
from largo.errors import LargoError
from largo.io import sha256_file
from largo.models.autoencoder import build_autoencoder
from largo.models.diffusers_vae import load_diffusers_vae

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@dataclass
class Autoencoder:
    net: nn.Module  # encode(x) -> DiagonalGaussian, decode(z) -> x, in eval mode, frozen
    kind: str  # "largo" | "diffusers"
    source: Path  # the folder it was loaded from (a checkpoint folder for largo, the model folder for diffusers)
    weights: Path  # the file whose sha256 identifies it
    sha256: str
    downsample_factor: int
    latent_channels: int
    image_channels: int
    resolution: int | None  # what a largo autoencoder was trained at (None: unknown)

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.source), "sha256": self.sha256, "f": self.downsample_factor,
                "latent_channels": self.latent_channels, "image_channels": self.image_channels,
                "resolution": self.resolution}


def is_diffusers_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / w).is_file() for w in DIFFUSERS_WEIGHTS)


def load_autoencoder(source: str | Path, device: torch.device | str = "cpu") -> Autoencoder:
    """A largo autoencoder (run, checkpoint folder or export: EMA weights) or a diffusers AutoencoderKL folder."""
    path = Path(source).resolve()  # recorded in latent checkpoints: absolute, so they load from any folder
    if path.is_dir() and is_diffusers_folder(path):
        vae = load_diffusers_vae(path, device)
        weights = next(path / w for w in DIFFUSERS_WEIGHTS if (path / w).is_file())
        c = vae.config
        return Autoencoder(vae.requires_grad_(False), "diffusers", path, weights, sha256_file(weights), c["f"],
                           c["latent_channels"], c["image_channels"], None)
    try:
        ckpt = resolve_checkpoint(source).resolve()
    except LargoError:
        raise LargoError(f"autoencoder {source} not found: give a largo autoencoder run, checkpoint or export, or a "
                         f"diffusers AutoencoderKL folder") from None
    meta = read_meta(ckpt)
    if meta.get("kind") != "autoencoder":
        raise LargoError(f"{ckpt} is not an autoencoder checkpoint (it holds a {meta.get('kind', 'diffusion')} model)")
    cfg = AutoencoderRunConfig.from_dict(meta["config"]).validate()
    net = build_autoencoder(cfg.autoencoder)
    weights = ckpt / "ema.safetensors"
    load_weights(net, weights)
    return Autoencoder(net.to(device).eval().requires_grad_(False), "largo", ckpt, weights, sha256_file(weights),
                       cfg.autoencoder.downsample_factor, cfg.autoencoder.latent_channels,
                       cfg.autoencoder.image_channels, cfg.data.resolution)
