"""The Python entry point for sampling, in the habit of diffusers' `from_pretrained` + pipeline call:

    pipe = largo.Pipeline.from_pretrained("fashion_mnist-32-cpu")
    images = pipe(["Sneaker", "Bag"], per_class=4, steps=20, cfg=3)   # 8 PIL images
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from largo.images import to_pil
from largo.runtime import resolve_device
from largo.sampling.classes import parse_classes
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
                 precision: str | None = None, batch_size: int = 64, output: str = "pil",
                 progress: bool = False) -> list[Image.Image] | torch.Tensor:
        """`per_class` images of each class in `classes` (names or indices; None: every class, at most 16
        spread over the labels), class by class; image i uses seed SEED+i. Unset sampling options take the
        run's sample config. `output="pil"` gives PIL images, `"tensor"` one uint8 (N, C, H, W) tensor."""
        if output not in ("pil", "tensor"):
            raise ValueError(f"output must be 'pil' or 'tensor', got {output!r}")
        if per_class < 1:
            raise ValueError("per_class must be >= 1")
        options = SamplingOptions.resolve(self.model.cfg, sampler=sampler, steps=steps, cfg=cfg, eta=eta,
                                          spacing=spacing, clip_x0=clip_x0, precision=precision)
        picked = parse_classes(classes, self.class_names)
        labels = torch.tensor([c for c in picked for _ in range(per_class)], dtype=torch.long)
        images = self.model.generate(labels, [seed + i for i in range(len(labels))], options, batch_size=batch_size,
                                     device=self.device, progress=progress)
        return images if output == "tensor" else [to_pil(im) for im in images]
