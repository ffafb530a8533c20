"""Memorisation check: how close each generated image is to its nearest training image, against the same distance
for real held-out images, in a feature space and in pixels.

A model that copies its training set puts samples much closer to training images than new real images of the
same domain ever are. The held-out images' nearest-neighbour distances are the yardstick: the share of samples
closer to the training set than the 1st percentile of the held-out distances is about 0.01 for a model that does
not copy, and grows with copying. Training sees mirrored images (`hflip`), so the mirrors of the training images
are searched too by default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor,
                       chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 distance from each query row to its nearest reference row, and that row's index, on the queries'
    device. |q|² + |r|² − 2 q·r in float64 over chunks of `chunk` reference rows: matmul speed, and exact enough
    that a copy is at distance ~1e-6 rather than at the float32 cancellation error."""
    if queries.ndim != 2 or reference.ndim != 2 or queries.shape[1] != reference.shape[1]:
        raise ValueError(f"need (N, d) and (M, d) with the same d, got {tuple(queries.shape)} and "
                         f"{tuple(reference.shape)}")
    q = queries.to(torch.float64)
    q2 = (q * q).sum(1, keepdim=True)
    best_d = torch.full((len(q),), float("inf"), dtype=torch.float64, device=q.device)
    best_i = torch.zeros(len(q), dtype=torch.long, device=q.device)
    for start in range(0, len(reference), chunk):
        r = reference[start:start + chunk].to(q.device, torch.float64)
        d2 = (q2 + (r * r).sum(1)[None, :] - 2 * q @ r.T).clamp_min_(0)
        d, i = d2.min(dim=1)
        better = d < best_d
        best_d = torch.where(better, d, best_d)
        best_i = torch.where(better, i + start, best_i)
    return best_d.sqrt().float().cpu(), best_i.cpu()


def pixel_vectors(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) → float (N, C·H·W) scaled so that the L2 distance between two rows is the root mean
    square difference of the two images in 8-bit levels (0–255)."""
    flat = images.reshape(len(images), -1).to(torch.float32)
    return flat / flat.shape[1] ** 0.5


def with_mirrors(images: torch.Tensor) -> torch.Tensor:
    """The images followed by their left-right mirrors (index i and i + N are one training image)."""
    return torch.cat([images, images.flip(-1)])


def compare(sample_d: torch.Tensor, heldout_d: torch.Tensor, quantiles: tuple[float, ...] = QUANTILES) -> dict:
    """Quantiles of the samples' and the held-out images' nearest-training distances, and the share of each closer
    than the held-out distances' 1st percentile."""
    def qs(d: torch.Tensor) -> dict[str, float]:
        values = torch.quantile(d.double(), torch.tensor(quantiles, dtype=torch.float64))
        return {f"q{q:g}": round(float(v), 4) for q, v in zip(quantiles, values)}

    threshold = float(torch.quantile(heldout_d.double(), 0.01))
    return {"samples": qs(sample_d), "heldout": qs(heldout_d), "heldout_q0.01": round(threshold, 4),
            "share_samples_below_heldout_q0.01": round(float((sample_d < threshold).double().mean()), 4),
            "share_heldout_below_heldout_q0.01": round(float((heldout_d < threshold).double().mean()), 4),
            "median_ratio_samples_to_heldout": round(float(sample_d.median() / heldout_d.median()), 4),
            "n_samples": len(sample_d), "n_heldout": len(heldout_d)}


def nearest_training(samples: torch.Tensor, heldout: torch.Tensor, train: torch.Tensor,
                     embed: Callable[[torch.Tensor], torch.Tensor], mirror: bool = True) -> dict:
    """For uint8 samples and held-out images: the distance to, and index of, the nearest training image in the
    space `embed` maps uint8 images to ((N, d) rows); indices point into `train` (a mirror counts as its
    original). Returns {"summary": compare(...), "sample_d", "sample_idx", "heldout_d", "heldout_idx"}."""
    ref_images = with_mirrors(train) if mirror else train
    reference = embed(ref_images)
    sample_d, sample_idx = nearest_neighbours(embed(samples), reference)
    heldout_d, heldout_idx = nearest_neighbours(embed(heldout), reference)
    n = len(train)
    return {"summary": compare(sample_d, heldout_d), "sample_d": sample_d, "sample_idx": sample_idx % n,
            "heldout_d": heldout_d, "heldout_idx": heldout_idx % n}
