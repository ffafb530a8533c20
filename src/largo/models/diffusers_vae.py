"""A pretrained diffusers `AutoencoderKL` (e.g. Stable Diffusion's VAE) behind the `KLAutoencoder` interface.

diffusers is an optional dependency, imported only when a VAE is loaded. Loading never touches the network
(`local_files_only=True`): the folder must already hold config.json and the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from largo.errors import LargoError
from largo.models.autoencoder import DiagonalGaussian, Reconstructs, check_images, check_latents

# What a broken folder makes diffusers raise: OSError for missing or unreadable files (corrupt safetensors
# included), ValueError/KeyError/RuntimeError for configs and weights that do not fit together.
_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError)


class DiffusersVAE(Reconstructs, nn.Module):
    """Same interface as `KLAutoencoder`: encode(x) → DiagonalGaussian, decode(z) → x, forward, downsample_factor,
    latent_channels, config (a dict) and last_layer_weight().

    The latents are the VAE's raw ones: multiply by config["scaling_factor"] before diffusion, as Stable
    Diffusion does, and divide by it before decode(). The wrapped model is in eval mode with frozen weights.
    """

    def __init__(self, vae: nn.Module, path: str | Path):
        super().__init__()
        self.vae = vae
        cfg = vae.config
        self.downsample_factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.latent_channels = int(cfg.latent_channels)
        self.image_channels = int(cfg.in_channels)
        self.config: dict[str, Any] = {
            "kind": "diffusers", "path": str(path), "latent_channels": self.latent_channels,
            "f": self.downsample_factor, "image_channels": self.image_channels,
            "scaling_factor": float(cfg.scaling_factor),
        }

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """Images in [-1, 1], (N, C, H, W) with H and W divisible by f → posterior over (N, latent, H/f, W/f)."""
        check_images(x, self.image_channels, self.downsample_factor)
        dist = self.vae.encode(x).latent_dist
        return DiagonalGaussian(dist.mean, dist.logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, latent_channels, h, w) → images (N, C, h·f, w·f), roughly in [-1, 1] (not clamped)."""
        check_latents(z, self.latent_channels)
        return self.vae.decode(z).sample

    def last_layer_weight(self) -> torch.Tensor:
        return self.vae.decoder.conv_out.weight


def load_diffusers_vae(path: str | Path, device: str | torch.device = "cpu") -> DiffusersVAE:
    """Load a diffusers AutoencoderKL folder (config.json + weights) as a frozen `DiffusersVAE` on `device`."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise LargoError(f"diffusers VAE folder not found: {folder}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        hint = f"; did you mean {folder / 'vae'}?" if (folder / "vae" / "config.json").is_file() else ""
        raise LargoError(f"{folder} has no config.json, so it is not a diffusers model folder{hint}")
    try:
        class_name = json.loads(config_file.read_text()).get("_class_name", "AutoencoderKL")
    except (OSError, ValueError, AttributeError) as e:
        raise LargoError(f"cannot read {config_file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    if class_name != "AutoencoderKL":
        raise LargoError(f"{folder} holds a diffusers {class_name}, not an AutoencoderKL")

    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise LargoError("loading a diffusers VAE needs the diffusers package: pip install diffusers") from None
    try:
        # low_cpu_mem_usage=False: the tiny-to-moderate VAE loads fine without `accelerate`, and saying so
        # silences diffusers' warning about it.
        vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False)
    except _LOAD_ERRORS as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LargoError(f"cannot load the diffusers VAE in {folder}: {first}") from e
    vae.requires_grad_(False)
    return DiffusersVAE(vae.eval(), folder).to(device)
