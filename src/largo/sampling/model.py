"""A trained model ready to sample from: network, config, class names and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from largo.autoencoder.latents import LatentSpace, latent_space_from_record
from largo.checkpoint import run_root
from largo.config import RunConfig
from largo.io import read_json
from largo.sampling.generate import generate_images
from largo.sampling.guide import WEIGHT_FILES, load_network
from largo.sampling.options import SamplingOptions

__all__ = ["DISTILL_RECORD", "WEIGHT_FILES", "LoadedModel", "distilled_rounds", "load_model"]

DISTILL_RECORD = "distill.json"  # in a `largo distill` run: teacher, guidance, and each finished round's run


def distilled_rounds(source: str | Path) -> dict[int, Path]:
    """{student steps: its round's run directory} of a `largo distill` run directory (empty for anything else)."""
    record = Path(source) / DISTILL_RECORD
    if not record.is_file():
        return {}
    rounds = read_json(record, "distillation record").get("rounds", {})
    return {int(steps): Path(source) / rel for steps, rel in rounds.items()}


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


def load_model(source: str | Path, device: torch.device | str = "cpu", weights: str = "ema",
               steps: int | None = None) -> LoadedModel:
    """Load a run directory (its latest checkpoint), a checkpoint folder or a released checkpoint's name, with
    its EMA (default) or online weights, in eval mode on `device`. For a `largo distill` run, `steps` picks the
    student distilled for that many steps (default: the run's latest, fewest-step student)."""
    source = distilled_rounds(source).get(steps, source) if steps is not None else source
    net, cfg, ckpt, meta = load_network(source, device, weights)
    class_names = meta.get("class_names") or [str(i) for i in range(cfg.model.num_classes)]
    latent = latent_space_from_record(meta["latent"], device, base=ckpt) if meta.get("latent") else None
    return LoadedModel(net, cfg, class_names, ckpt, meta, latent)

