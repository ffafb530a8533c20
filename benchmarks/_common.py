"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so this imports as `_common`)."""

from __future__ import annotations

import os

import torch

from largo.data import ImageSet


def load_average() -> str:
    """The 1/5/15-minute load average: other jobs on the machine slow every timed model alike."""
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer measures it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_images(channels: int, classes: int, resolution: int, n: int) -> ImageSet:
    """n seeded random uint8 images of a dataset's shape, classes cycled: `Trainer(data=...)` without the dataset."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, resolution, resolution), dtype=torch.uint8, generator=g)
    return ImageSet(images, torch.arange(n) % classes, [f"class{i}" for i in range(classes)])


def set_fields(cfg, items):
    """`cfg` with SECTION.FIELD=VALUE (or FIELD=VALUE) overrides, the way the scripts' `--set` reads them: VALUE
    is JSON where it parses (28, [7], true), else a bare string (edm); names and types are checked like flags."""
    import json

    from largo.config import check_overrides, with_overrides

    flat = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            flat[key.rpartition(".")[2]] = json.loads(raw)
        except json.JSONDecodeError:
            flat[key.rpartition(".")[2]] = raw
    return with_overrides(cfg, check_overrides(flat, "--set"))
