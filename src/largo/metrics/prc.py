"""Improved precision and recall (Kynkäänniemi et al. 2019): each sample's k-NN radius within its own set
spans a manifold; precision = share of generated samples inside the real manifold, recall = share of real
samples inside the generated manifold."""

from __future__ import annotations

import torch

from largo.metrics import defaults

_ROWS = 1024  # pairwise distances are computed this many rows at a time


def _subsample(x: torch.Tensor, max_n: int | None, g: torch.Generator) -> torch.Tensor:
    if max_n and x.shape[0] > max_n:
        return x[torch.randperm(x.shape[0], generator=g)[:max_n]]
    return x


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest neighbour in x, itself excluded."""
    if x.shape[0] <= k:
        raise ValueError(f"k={k} nearest neighbours need more than {k} samples, got {x.shape[0]}")
    out = []
    for start in range(0, x.shape[0], _ROWS):
        d = torch.cdist(x[start:start + _ROWS], x)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the 0 to itself is the 1st
    return torch.cat(out)


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of `points` that lie within radius of at least one centre."""
    inside = 0
    for start in range(0, points.shape[0], _ROWS):
        d = torch.cdist(points[start:start + _ROWS], centres)
        inside += int((d <= radii.unsqueeze(0)).any(dim=1).sum())
    return inside / points.shape[0]


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = defaults.PRC_K,
                     max_samples: int | None = defaults.PRC_MAX_SAMPLES, seed: int = defaults.SEED) -> dict:
    g = torch.Generator().manual_seed(seed)
    real = _subsample(real.to(torch.float64), max_samples, g)
    fake = _subsample(fake.to(torch.float64), max_samples, g)
    precision = _coverage(fake, real, knn_radii(real, k))
    recall = _coverage(real, fake, knn_radii(fake, k))
    return {"precision": precision, "recall": recall, "k": k, "n_real_used": int(real.shape[0]),
            "n_generated_used": int(fake.shape[0])}
