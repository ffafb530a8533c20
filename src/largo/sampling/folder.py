"""`largo sample`'s job: draw N images per class and write them as PNGs plus a labelled grid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from largo.draw.grid import labelled_grid
from largo.errors import LargoError
from largo.images import safe_name, write_pngs
from largo.io import atomic_save_image
from largo.sampling.model import LoadedModel
from largo.sampling.options import SamplingOptions


@dataclass
class SampleFolder:
    out: Path
    grid: Path
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor


def default_sample_dir(model: LoadedModel, options: SamplingOptions, seed: int) -> Path:
    """RUN/samples/<settings> for a run; ./samples/<checkpoint name>/<settings> for a released model."""
    name = f"{options.sampler}-{options.steps}-cfg{options.cfg:g}-seed{seed}"
    root = model.run_dir / "samples" if model.run_dir is not None else Path("samples") / model.checkpoint.name
    return root / name


def sample_to_folder(model: LoadedModel, classes: list[int], per_class: int, options: SamplingOptions,
                     seed: int = 0, batch_size: int = 64, device: torch.device | str | None = None,
                     out: Path | None = None, progress: bool = False,
                     generate: Callable[..., torch.Tensor] | None = None) -> SampleFolder:
    """`per_class` images of each class (image i uses seed SEED+i) → OUT/images/<i>_<class>.png and OUT/grid.png.
    `generate(labels, seeds, options, **kwargs)` replaces `model.generate` (e.g. re-ranked sampling)."""
    if per_class < 1 or batch_size < 1:
        raise LargoError("--n and --batch-size must be >= 1")
    out = Path(out) if out is not None else default_sample_dir(model, options, seed)
    (out / "images").mkdir(parents=True, exist_ok=True)  # an unusable --out fails before any sampling
    labels = torch.tensor([c for c in classes for _ in range(per_class)], dtype=torch.long)
    seeds = [seed + i for i in range(len(labels))]
    images = (generate or model.generate)(labels, seeds, options, batch_size=batch_size, device=device,
                                          progress=progress)
    names = model.class_names
    write_pngs(images, [out / "images" / f"{i:05d}_{safe_name(names[c])}.png" for i, c in enumerate(labels.tolist())])
    grid = out / "grid.png"
    atomic_save_image(grid, labelled_grid(images, per_class, [names[c] for c in classes]))
    return SampleFolder(out, grid, images, labels)
