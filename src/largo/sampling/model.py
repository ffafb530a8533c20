"""A trained model ready to sample from: network, config, class names and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from largo.checkpoint import load_weights, read_meta, resolve_checkpoint, run_root
from largo.config import RunConfig
from largo.errors import LargoError
from largo.models import build_unet

WEIGHT_FILES = {"ema": "ema.safetensors", "online": "model.safetensors"}


@dataclass
class LoadedModel:
    net: nn.Module
    cfg: RunConfig
    class_names: list[str]
    checkpoint: Path  # the checkpoint folder the weights came from
    meta: dict

    @property
    def run_dir(self) -> Path | None:
        """The run directory of a run's checkpoint; None for a released checkpoint or an export."""
        return run_root(self.checkpoint)

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


def load_model(source: str | Path, device: torch.device | str = "cpu", weights: str = "ema") -> LoadedModel:
    """Load a run directory (its latest checkpoint), a checkpoint folder or a released checkpoint's name, with
    its EMA (default) or online weights, in eval mode on `device`."""
    if weights not in WEIGHT_FILES:
        raise LargoError(f"unknown weights {weights!r}; valid: {', '.join(WEIGHT_FILES)}")
    ckpt = resolve_checkpoint(source)
    meta = read_meta(ckpt)
    try:
        cfg = RunConfig.from_dict(meta["config"]).validate()
    except LargoError as e:
        raise LargoError(f"checkpoint {ckpt} has an unusable config ({e})") from None
    if cfg.model.image_channels < 1:
        raise LargoError(f"checkpoint {ckpt} records no image_channels in its config")
    net = build_unet(cfg.model, cfg.data.resolution)
    load_weights(net, ckpt / WEIGHT_FILES[weights])
    class_names = meta.get("class_names") or [str(i) for i in range(cfg.model.num_classes)]
    return LoadedModel(net.to(device).eval(), cfg, class_names, ckpt, meta)

