"""Fréchet distance between Gaussians fitted to two feature sets (FID in Inception space, FD elsewhere).

    FD = ||μ₁ − μ₂||² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^{1/2}

tr (Σ₁Σ₂)^{1/2} is taken from the eigenvalues of the symmetric PSD matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2}, which is similar
to Σ₁Σ₂ (same eigenvalues), in float64: no `scipy.linalg.sqrtm`, no complex parts to drop.
"""

from __future__ import annotations

import numpy as np
import torch


class GaussianStats:
    """Streaming mean and covariance in float64: add feature batches, memory stays O(d²)."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.sum = np.zeros(dim, dtype=np.float64)
        self.outer = np.zeros((dim, dim), dtype=np.float64)

    def update(self, features: torch.Tensor | np.ndarray) -> GaussianStats:
        x = _as_f64(features)
        self.n += x.shape[0]
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x
        return self

    def finalize(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise ValueError("a covariance needs at least 2 samples")
        mu = self.sum / self.n
        sigma = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, (sigma + sigma.T) / 2


def gaussian_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of an (N, d) feature matrix, N ≥ 2."""
    x = _as_f64(features)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected an (N>=2, d) feature matrix, got shape {tuple(x.shape)}")
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return mu, sigma


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray | None, sigma2: np.ndarray, factor1: np.ndarray | None = None) -> float:
    """tr (Σ₁ Σ₂)^{1/2} for symmetric PSD Σ₁, Σ₂.

    With Σ₁ = FᵀF (F of shape (r, d), e.g. r−1 < d centred samples / √(r−1)), the non-zero eigenvalues of Σ₁Σ₂ are
    those of the r×r matrix F Σ₂ Fᵀ, which costs O(r d²) instead of the O(d³) of Σ₁^{1/2}."""
    if factor1 is not None:
        f = np.asarray(factor1, dtype=np.float64)
        m = f @ np.asarray(sigma2, dtype=np.float64) @ f.T
    else:
        s1 = _psd_sqrt(np.asarray(sigma1, dtype=np.float64))
        m = s1 @ np.asarray(sigma2, dtype=np.float64) @ s1
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, factor1=None) -> float:
    """Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂), in float64 (tiny negative round-off clipped to 0).
    `factor1` (optional): F with Σ₁ = FᵀF, for the low-rank shortcut of `trace_sqrt_product`."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: {mu1.shape}, {sigma1.shape} vs {mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2, factor1)
    return max(float(fd), 0.0)


def fd_from_features(features1, features2) -> float:
    """FD between the Gaussians fitted to two (N, d) feature sets. When the smaller set has no more samples than
    dimensions (class-matched FD in Inception space), its covariance is used in factored form (same value)."""
    x1, x2 = _as_f64(features1), _as_f64(features2)
    if x1.shape[0] > x2.shape[0]:
        x1, x2 = x2, x1  # FD is symmetric; factor the smaller side
    mu1, sigma1 = gaussian_stats(x1)
    mu2, sigma2 = gaussian_stats(x2)
    factor1 = (x1 - mu1) / np.sqrt(x1.shape[0] - 1) if x1.shape[0] - 1 < x1.shape[1] else None
    return frechet_distance(mu1, sigma1, mu2, sigma2, factor1)


def _as_f64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)
