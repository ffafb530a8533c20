"""Kernel Inception Distance: the unbiased estimator of MMD² with the cubic polynomial kernel
k(x, y) = (γ x·y + c)^3, γ = 1/d, c = 1 (Bińkowski et al. 2018), averaged over random subsets (mean ± std,
the std over subsets as torch-fidelity and torchmetrics report it)."""

from __future__ import annotations

import torch

from largo.errors import LargoError
from largo.metrics import defaults


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = defaults.KID_DEGREE,
                      gamma: float | None = None, coef: float = defaults.KID_COEF) -> torch.Tensor:
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = defaults.KID_DEGREE,
                  gamma: float | None = None, coef: float = defaults.KID_COEF) -> float:
    """Unbiased MMD² between samples x (m, d) and y (n, d), m, n ≥ 2 (they may differ):
    Σ_{i≠j} k(x_i,x_j)/(m(m−1)) + Σ_{i≠j} k(y_i,y_j)/(n(n−1)) − 2 Σ_{i,j} k(x_i,y_j)/(mn)."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError("MMD² needs at least 2 samples on each side")
    k_xx = polynomial_kernel(x, x, degree, gamma, coef)
    k_yy = polynomial_kernel(y, y, degree, gamma, coef)
    k_xy = polynomial_kernel(x, y, degree, gamma, coef)
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def resolve_subset_size(n_real: int, n_gen: int, requested: int | None) -> int:
    """The subset size to use: the requested one (error when a side is smaller), else min(default, sides)."""
    if requested is not None:
        if requested < 2:
            raise LargoError(f"--kid-subset-size must be >= 2, got {requested}")
        if min(n_real, n_gen) < requested:
            raise LargoError(f"KID subset size {requested} needs at least that many images on each side, "
                             f"got {n_gen} generated and {n_real} reference (lower --kid-subset-size)")
        return requested
    size = min(defaults.KID_SUBSET_SIZE, n_real, n_gen)
    if size < 2:
        raise LargoError(f"KID needs at least 2 images on each side, got {n_gen} generated and {n_real} reference")
    return size


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = defaults.KID_SUBSETS,
        subset_size: int | None = None, seed: int = defaults.SEED, degree: int = defaults.KID_DEGREE,
        gamma: float | None = None, coef: float = defaults.KID_COEF) -> dict:
    """KID over `subsets` random subsets (without replacement within a subset) of `subset_size` per side."""
    size = resolve_subset_size(real.shape[0], fake.shape[0], subset_size)
    if subsets < 1:
        raise LargoError(f"--kid-subsets must be >= 1, got {subsets}")
    if size == real.shape[0] == fake.shape[0]:  # every subset is the whole set: one value, std 0
        value = mmd2_unbiased(real, fake, degree, gamma, coef)
        return {"mean": value, "std": 0.0, "subsets": subsets, "subset_size": size}
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        r = real[torch.randperm(real.shape[0], generator=g)[:size]]
        f = fake[torch.randperm(fake.shape[0], generator=g)[:size]]
        values.append(mmd2_unbiased(r, f, degree, gamma, coef))
    v = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(v.mean()), "std": float(v.std(unbiased=False)), "subsets": subsets,
            "subset_size": size}
