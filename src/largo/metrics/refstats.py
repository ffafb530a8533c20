"""Reference (real-side) features, computed once per feature space and cached under `$LARGO_CACHE/refstats`
(default ~/.cache/largo/refstats), keyed by dataset, split, resolution, resize method, feature-extractor sha256
and a digest of the reference pixels (so a changed folder dataset or subset never reuses stale features)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from largo.io import atomic_write
from largo.metrics import defaults
from largo.metrics.features import FeatureSpace, extract

CACHE_VERSION = 1


def images_digest(images: torch.Tensor, labels: torch.Tensor | None = None) -> str:
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    if labels is not None:
        h.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(space: FeatureSpace, dataset: str, split: str, resolution: int, data_resize: str,
              digest: str) -> dict:
    return {"v": CACHE_VERSION, "dataset": dataset, "split": split, "resolution": resolution,
            "data_resize": data_resize, "resize": space.resize, "extractor": space.name,
            "extractor_sha256": space.sha256, "images": digest}


def cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe = key["dataset"].replace(":", "_").replace("/", "_")[-40:]
    extractor = key["extractor"].replace(":", "_")
    return defaults.refstats_dir() / f"{safe}-{key['split']}-{key['resolution']}-{extractor}-{digest}.safetensors"


def reference_outputs(space: FeatureSpace, images: torch.Tensor, labels: torch.Tensor, *, dataset: str,
                      split: str, resolution: int, data_resize: str,
                      batch_size: int = defaults.FEATURE_BATCH_SIZE, log=print, progress: bool = True
                      ) -> tuple[dict[str, torch.Tensor], dict]:
    """(outputs, info): the space's outputs on the reference images, from the cache when present."""
    key = cache_key(space, dataset, split, resolution, data_resize, images_digest(images, labels))
    path = cache_path(key)
    if path.is_file():
        try:
            with safe_open(str(path), "pt") as f:
                if json.loads(f.metadata().get("key", "{}")) == key:
                    outs = {k: f.get_tensor(k) for k in f.keys()}
                    if outs["features"].shape[0] == images.shape[0]:
                        return outs, {"cache": str(path), "cached": True}
        except Exception:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
            pass
    log(f"computing reference features ({space.name}, {images.shape[0]} images); cached in {path}")
    outs = extract(space, images, batch_size, progress=f"reference {space.name}" if progress else None)
    try:
        tensors = {k: v.contiguous() for k, v in outs.items()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"key": json.dumps(key)}))
    except OSError as e:
        log(f"warning: could not write reference cache {path}: {e}")
    return outs, {"cache": str(path), "cached": False}
