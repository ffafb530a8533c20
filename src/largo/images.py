"""Images between the model and the disk: float [-1, 1] ↔ uint8 (N, C, H, W) ↔ PIL ↔ PNG files.

Everywhere outside the model, images are uint8 tensors (N, C, H, W) in [0, 255]; the model sees float32 in
[-1, 1] (`x = images / 127.5 - 1`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from largo.io import atomic_save_image


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats → uint8 [0, 255]."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [-1, 1]."""
    return images.float() / 127.5 - 1


def to_pil(image: torch.Tensor) -> Image.Image:
    """One uint8 (C, H, W) image as a PIL image: mode L for one channel, RGB for three."""
    arr = image.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)  # uint8 H×W → L, H×W×3 → RGB


def safe_name(text: str) -> str:
    """A class name as part of a file name."""
    return text.replace("/", "-").replace(" ", "_")


def write_pngs(images: torch.Tensor, paths: list[Path]) -> None:
    """Image i to paths[i] (folders created)."""
    for image, path in zip(images, paths):
        atomic_save_image(path, to_pil(image))
