"""Latent spaces: an autoencoder plus the normalisation of its latents, and datasets encoded once and cached.

A latent diffusion model sees normalised latents ẑ = (z - shift) · scale, where z is the encoder's posterior mean.
`latent_norm="std"` uses one scale, 1/std over every latent value of the training set, and no shift (the LDM
"scale factor"); `"channel"` a shift and scale per channel. Both are computed once from the training set and
stored in the diffusion checkpoint, so sampling decodes with exactly the numbers training used.

Flipped training images are encoded as images (both orientations are cached), not by flipping latents: a
convolutional encoder is not exactly flip-equivariant.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from largo.autoencoder.load import Autoencoder, load_autoencoder
from largo.config import LATENT_NORMS
from largo.data import ImageSet
from largo.errors import LargoError
from largo.images import to_float
from largo.io import atomic_write
from largo.paths import cache_dir

CACHE_VERSION = 1


@dataclass
class LatentSpace:
    """Pixels ↔ normalised latents through one autoencoder."""

    autoencoder: Autoencoder
    shift: torch.Tensor  # (C,) float32
    scale: torch.Tensor  # (C,) float32
    norm: str

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """float images in [-1, 1] (N, C, H, W) → normalised latents (posterior mean)."""
        z = self.autoencoder.net.encode(x).mode().contiguous()
        return (z - self._v(self.shift, z)) * self._v(self.scale, z)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """normalised latents → float images (nominally [-1, 1]), decoded `batch_size` at a time."""
        net = self.autoencoder.net
        device = next(net.parameters()).device
        out = []
        for i in range(0, len(z), batch_size):
            zb = z[i:i + batch_size].to(device=device, dtype=torch.float32)
            out.append(net.decode(zb / self._v(self.scale, zb) + self._v(self.shift, zb)).float())
        return torch.cat(out)

    @staticmethod
    def _v(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(like.device, like.dtype).view(1, -1, 1, 1)

    def record(self) -> dict:
        """What a diffusion checkpoint stores about its latent space (the autoencoder is checked by sha256)."""
        return {"autoencoder": self.autoencoder.describe(), "norm": self.norm, "shift": self.shift.tolist(),
                "scale": self.scale.tolist()}


def latent_space_from_record(record: dict, device: torch.device | str = "cpu", base: Path | None = None
                             ) -> LatentSpace:
    """The latent space a diffusion checkpoint records; its autoencoder must be the one it was trained with.
    A relative autoencoder path (an export carries its autoencoder beside it) is relative to `base`."""
    try:
        ae, path = record["autoencoder"], Path(record["autoencoder"]["path"])
        shift, scale = torch.tensor(record["shift"]), torch.tensor(record["scale"])
    except (KeyError, TypeError, ValueError):
        raise LargoError("the checkpoint's latent record is corrupt (autoencoder, shift, scale)") from None
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.exists():
        raise LargoError(f"this latent model needs its autoencoder {path} (sha256 {ae.get('sha256', '?')[:12]}), "
                         f"which is missing")
    loaded = load_autoencoder(path, device)
    if loaded.sha256 != ae.get("sha256"):
        raise LargoError(f"the autoencoder at {path} has changed since this latent model was trained (sha256 "
                         f"{loaded.sha256[:12]}, expected {str(ae.get('sha256'))[:12]}); restore it or retrain")
    return LatentSpace(loaded, shift.float(), scale.float(), record.get("norm", "std"))


def fit_latent_space(autoencoder: Autoencoder, latents: torch.Tensor, norm: str) -> LatentSpace:
    """Normalisation from raw training latents (N, C, h, w)."""
    if norm not in LATENT_NORMS:
        raise LargoError(f"unknown latent_norm {norm!r}; valid: {', '.join(LATENT_NORMS)}")
    z = latents.double()
    c = z.shape[1]
    if norm == "std":
        shift, scale = torch.zeros(c), torch.full((c,), 1.0 / float(z.std()))
    else:
        shift = z.mean(dim=(0, 2, 3))
        scale = 1.0 / z.transpose(0, 1).reshape(c, -1).std(dim=1)
    return LatentSpace(autoencoder, shift.float(), scale.float(), norm)


@dataclass
class EncodedSet:
    """Raw (unnormalised) posterior means of a dataset split, in both orientations."""

    latents: torch.Tensor  # float32 (N, C, h, w)
    flipped: torch.Tensor  # float32 (N, C, h, w): the latents of the horizontally flipped images
    labels: torch.Tensor
    class_names: list[str]
    from_cache: bool
    path: Path


def encode_dataset(autoencoder: Autoencoder, data: ImageSet, key: dict, batch_size: int = 64,
                   device: torch.device | str = "cpu", log=print) -> EncodedSet:
    """Encode `data` (and its mirror image) once; later calls with the same `key` (dataset, split, resolution, …)
    and the same autoencoder weights read the cache instead."""
    if data.channels != autoencoder.image_channels:
        raise LargoError(f"the autoencoder takes {autoencoder.image_channels}-channel images; the dataset has "
                         f"{data.channels}")
    f = autoencoder.downsample_factor
    h, w = data.images.shape[-2:]
    if h % f or w % f:
        raise LargoError(f"the dataset's {w}x{h} images are not divisible by the autoencoder's factor {f}")
    if autoencoder.resolution is not None and autoencoder.resolution != h:
        raise LargoError(f"the autoencoder was trained at {autoencoder.resolution}x{autoencoder.resolution}; these "
                         f"images are {w}x{h} (use --resolution {autoencoder.resolution})")
    full = {"v": CACHE_VERSION, **key, "n": len(data), "autoencoder_sha256": autoencoder.sha256}
    digest = hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = cache_dir("latents") / f"{digest}.safetensors"
    cached = _read(path, len(data))
    if cached is not None:
        return EncodedSet(*cached, data.labels, data.class_names, True, path)
    log(f"encoding {len(data)} images (and their mirror images) with the autoencoder; cached in {path}")
    net = autoencoder.net
    parts: tuple[list, list] = ([], [])
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x = to_float(data.images[i:i + batch_size]).to(device)
            parts[0].append(net.encode(x).mode().float().cpu().contiguous())
            parts[1].append(net.encode(x.flip(-1)).mode().float().cpu().contiguous())
    latents, flipped = torch.cat(parts[0]), torch.cat(parts[1])
    try:
        atomic_write(path, lambda tmp: save_file({"latents": latents, "flipped": flipped}, tmp))
    except OSError as e:  # a cache that cannot be written costs time, not correctness
        log(f"latent cache not written ({e})")
    return EncodedSet(latents, flipped, data.labels, data.class_names, False, path)


def _read(path: Path, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        t = load_file(str(path))
    except (FileNotFoundError, SafetensorError, OSError, RuntimeError):
        return None
    if set(t) != {"latents", "flipped"} or len(t["latents"]) != n:
        return None
    return t["latents"], t["flipped"]
