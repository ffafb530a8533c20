"""The Python entry point for sampling, in the habit of diffusers' `from_pretrained` + pipeline call:

    pipe = largo.Pipeline.from_pretrained("fashion_mnist-32-cpu")
    images = pipe(["Sneaker", "Bag"], per_class=4, steps=20, cfg=3)   # 8 PIL images
    sandal = pipe.edit(images[0], "Sandal", strength=0.6)            # image-to-image (SDEdit)
    filled = pipe.inpaint(images[0], mask, "Sneaker", method="repaint")  # mask: white = fill
    strip = pipe.interpolate("Sneaker", "Sandal", frames=8, seed=0)  # mixed class embeddings at one seed
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from largo.errors import LargoError
from largo.images import to_pil
from largo.runtime import resolve_device
from largo.sampling.classes import parse_classes
from largo.sampling.editing import image_to_image, inpaint, interpolate_classes
from largo.sampling.model import LoadedModel, load_model
from largo.sampling.options import SamplingOptions


class Pipeline:
    """A trained class-conditional model and everything needed to sample from it."""

    def __init__(self, model: LoadedModel, device: torch.device):
        self.model = model
        self.device = device

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str = "auto", weights: str = "ema") -> Pipeline:
        """A released checkpoint's name (`largo sample --help` lists them), a run directory or a checkpoint
        folder; `weights` is "ema" (default) or "online"."""
        dev = resolve_device(device)
        return cls(load_model(name_or_path, dev, weights), dev)

    @property
    def class_names(self) -> list[str]:
        return self.model.class_names

    @property
    def config(self):
        """The run's `RunConfig` (data, model, diffusion, train and sample sections)."""
        return self.model.cfg

    def __call__(self, classes: str | list[str | int] | None = None, per_class: int = 1, *, seed: int = 0,
                 sampler: str | None = None, steps: int | None = None, cfg: float | None = None,
                 eta: float | None = None, spacing: str | None = None, clip_x0: bool | None = None,
                 precision: str | None = None, guide_with: str | None = None, batch_size: int = 64,
                 output: str = "pil", progress: bool = False) -> list[Image.Image] | torch.Tensor:
        """`per_class` images of each class in `classes` (names or indices; None: every class, at most 16
        spread over the labels), class by class; image i uses seed SEED+i. Unset sampling options take the
        run's sample config. `output="pil"` gives PIL images, `"tensor"` one uint8 (N, C, H, W) tensor."""
        if output not in ("pil", "tensor"):
            raise ValueError(f"output must be 'pil' or 'tensor', got {output!r}")
        if per_class < 1:
            raise ValueError("per_class must be >= 1")
        options = SamplingOptions.resolve(self.model.cfg, sampler=sampler, steps=steps, cfg=cfg, eta=eta,
                                          spacing=spacing, clip_x0=clip_x0, precision=precision,
                                          guide_with=guide_with)
        picked = parse_classes(classes, self.class_names)
        labels = torch.tensor([c for c in picked for _ in range(per_class)], dtype=torch.long)
        images = self.model.generate(labels, [seed + i for i in range(len(labels))], options, batch_size=batch_size,
                                     device=self.device, progress=progress)
        return images if output == "tensor" else [to_pil(im) for im in images]

    # -- editing (largo.sampling.editing) -------------------------------------------------------------------------
    def edit(self, image, target: str | int, strength: float = 0.6, *, seed: int = 0, output: str = "pil",
             **sampling) -> Image.Image | torch.Tensor:
        """Image-to-image (SDEdit): `image` (PIL or uint8 (C, H, W)) noised to `strength` and denoised toward the
        class `target`; strength 0 returns the image, 1 is plain sampling. `sampling`: SamplingOptions by name."""
        x = as_uint8(image)
        result = image_to_image(self.model.net, self.model.cfg, x, [self._class(target)], strength, [seed],
                                SamplingOptions.resolve(self.model.cfg, **sampling), device=self.device)
        return _out(result.images[0], output)

    def inpaint(self, image, mask, target: str | int, *, method: str = "repaint", seed: int = 0,
                output: str = "pil", **sampling) -> Image.Image | torch.Tensor:
        """Fill the white (≥ 128) pixels of `mask` (PIL "L" or uint8/bool (H, W)) toward the class `target`; the
        other pixels are `image`'s exactly. method: replace, repaint (default) or ddnm."""
        x = as_uint8(image)
        m = torch.from_numpy(np.array(mask.convert("L"))) if isinstance(mask, Image.Image) else torch.as_tensor(mask)
        result = inpaint(self.model.net, self.model.cfg, x, m, [self._class(target)], [seed],
                         SamplingOptions.resolve(self.model.cfg, **sampling), method=method, device=self.device)
        return _out(result.images[0], output)

    def interpolate(self, class_a: str | int, class_b: str | int, frames: int = 8, *, seed: int = 0,
                    output: str = "pil", **sampling) -> list[Image.Image] | torch.Tensor:
        """`frames` images at one seed with the class embedding mixed from `class_a` to `class_b`."""
        images = interpolate_classes(self.model.net, self.model.cfg, self._class(class_a), self._class(class_b),
                                     frames, seed, SamplingOptions.resolve(self.model.cfg, **sampling),
                                     device=self.device)
        return images if output == "tensor" else [to_pil(im) for im in images]

    def _class(self, name: str | int) -> int:
        return parse_classes([name], self.class_names)[0]


def as_uint8(image) -> torch.Tensor:
    """A PIL image or uint8 tensor (C, H, W) / (N, C, H, W) as uint8 (N, C, H, W)."""
    if isinstance(image, Image.Image):
        a = np.array(image.convert("L") if image.mode in ("L", "1", "P", "I;16", "LA") else image.convert("RGB"))
        return torch.from_numpy(a[:, :, None] if a.ndim == 2 else a).permute(2, 0, 1)[None].contiguous()
    x = torch.as_tensor(image)
    if x.dtype != torch.uint8 or x.ndim not in (3, 4):
        raise LargoError("an image must be a PIL image or a uint8 tensor (C, H, W)")
    return x[None] if x.ndim == 3 else x


def _out(image: torch.Tensor, output: str):
    if output not in ("pil", "tensor"):
        raise ValueError(f"output must be 'pil' or 'tensor', got {output!r}")
    return image if output == "tensor" else to_pil(image)
