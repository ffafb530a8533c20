"""Presets: overrides on top of the dataclass defaults, by name (`largo train --preset demo`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from largo.config.run import RunConfig
from largo.errors import LargoError

# Overrides on top of the dataclass defaults. "demo" is sized for a 2-core laptop CPU (see README).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "flowers64": {
        "data": {"dataset": "flowers102", "resolution": 64, "balanced": True},
        "model": {"base_channels": 64, "channel_mult": (1, 2, 4, 8), "attention_resolutions": (16, 8)},
        "train": {"batch_size": 64},
    },
    "fashion32": {
        "data": {"dataset": "fashion_mnist", "resolution": 32},
        "model": {"base_channels": 64, "channel_mult": (1, 2, 2), "attention_resolutions": (16, 8)},
    },
    "mnist32": {
        "data": {"dataset": "mnist", "resolution": 32, "hflip": False},
        "model": {"base_channels": 64, "channel_mult": (1, 2, 2), "attention_resolutions": (16, 8)},
    },
    "cifar32": {
        "data": {"dataset": "cifar10", "resolution": 32},
        "model": {"base_channels": 128, "channel_mult": (1, 2, 2, 2), "attention_resolutions": (16,)},
        "train": {"batch_size": 128},
    },
    "demo": {
        "data": {"dataset": "fashion_mnist", "resolution": 32},
        "model": {"base_channels": 32, "channel_mult": (1, 2, 2), "num_res_blocks": 1,
                  "attention_resolutions": (8,), "dropout": 0.0},
        # v-prediction: 87 % of samples recognised vs 21 % for ε at this budget (docs/GPU_RESULTS.md, demo sweep).
        "diffusion": {"prediction": "v"},
        "train": {"batch_size": 64, "lr": 1e-3, "lr_warmup": 100, "ema_decay": 0.999, "max_minutes": 9.0,
                  "steps": 100_000, "checkpoint_every": 250, "log_every": 25},
        "sample": {"sampler": "dpmpp2m", "sample_steps": 20, "cfg": 3.0},
    },
}


def preset_config(name: str) -> RunConfig:
    if name not in PRESETS:
        raise LargoError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    cfg = RunConfig(preset=name)
    for section, overrides in PRESETS[name].items():
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **overrides))
    return cfg
