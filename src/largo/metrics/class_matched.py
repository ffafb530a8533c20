"""Class-matched metrics as the LARGO report defines them: generated images of class c against real images
of class c, one value per class, then the mean over the classes that have enough images on both sides."""

from __future__ import annotations

from collections.abc import Callable

import torch

from largo.metrics import defaults
from largo.metrics.fid import fd_from_features
from largo.metrics.kid import kid, mmd2_unbiased

MIN_PER_CLASS = 2  # a covariance and the unbiased MMD² need two samples a side


def class_matched(real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor,
                  class_names: list[str], metrics: dict[str, Callable[[torch.Tensor, torch.Tensor], float]]
                  ) -> dict:
    """Apply each `metrics[name](real_c, fake_c) -> float` per class; return the per-class table and the means.

    Classes with fewer than 2 images on a side are listed in `skipped_classes` and left out of the mean."""
    rows, skipped = [], []
    for c, name in enumerate(class_names):
        r, f = real[real_labels == c], fake[fake_labels == c]
        row: dict = {"class": c, "name": name, "n_reference": int(r.shape[0]), "n_generated": int(f.shape[0])}
        if r.shape[0] < MIN_PER_CLASS or f.shape[0] < MIN_PER_CLASS:
            if f.shape[0] > 0 or r.shape[0] > 0:
                skipped.append(c)
            continue
        for metric, fn in metrics.items():
            row[metric] = fn(r, f)
        rows.append(row)
    means = {m: (sum(row[m] for row in rows) / len(rows) if rows else None) for m in metrics}
    return {"mean": means, "classes_evaluated": len(rows), "skipped_classes": skipped, "per_class": rows}


def default_class_metrics(kid_subsets: int = defaults.KID_SUBSETS, kid_subset_size: int | None = None,
                          seed: int = defaults.SEED) -> dict[str, Callable[[torch.Tensor, torch.Tensor], float]]:
    """FD and KID per class. KID's subset size is capped at the class's image counts (recorded nowhere else,
    so the KID per class is the plain unbiased MMD² when a class has fewer images than the subset size)."""
    def kid_c(r: torch.Tensor, f: torch.Tensor) -> float:
        size = min(kid_subset_size or defaults.KID_SUBSET_SIZE, r.shape[0], f.shape[0])
        if size == r.shape[0] == f.shape[0]:
            return mmd2_unbiased(r, f)
        return kid(r, f, subsets=kid_subsets, subset_size=size, seed=seed)["mean"]

    return {"fd": fd_from_features, "kid": kid_c}
