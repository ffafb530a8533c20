"""Exact conversions between the three network targets, given x_t = α x0 + σ ε (α² + σ² = 1).

    eps: ε            x0: x0            v: v = α ε - σ x0   (Salimans & Ho 2022)

    x0 = (x_t - σ ε) / α = α x_t - σ v          ε = (x_t - α x0) / σ = σ x_t + α v

`alpha` and `sigma` are tensors broadcastable against x_t (e.g. (B, 1, 1, 1)). The formulas divide by α (from ε)
or by σ (from x0) only where no division-free form exists, so at ᾱ = 0 an ε-prediction has no x0 (inf/nan),
which is the known incompatibility of ε-prediction with zero terminal SNR.
"""

from __future__ import annotations

from torch import Tensor

from largo.config import PREDICTIONS
from largo.errors import LargoError


def check_prediction(name: str) -> str:
    if name not in PREDICTIONS:
        raise LargoError(f"unknown prediction target {name!r}; valid: {', '.join(PREDICTIONS)}")
    return name


def to_x0(pred: Tensor, source: str, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    if source == "x0":
        return pred
    if source == "eps":
        return (x_t - sigma * pred) / alpha
    if source == "v":
        return alpha * x_t - sigma * pred
    raise LargoError(f"unknown prediction target {source!r}; valid: {', '.join(PREDICTIONS)}")


def to_eps(pred: Tensor, source: str, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    if source == "eps":
        return pred
    if source == "x0":
        return (x_t - alpha * pred) / sigma
    if source == "v":
        return sigma * x_t + alpha * pred
    raise LargoError(f"unknown prediction target {source!r}; valid: {', '.join(PREDICTIONS)}")


def to_v(pred: Tensor, source: str, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    if source == "v":
        return pred
    if source == "eps":
        # v = α ε - σ x0 with x0 = (x_t - σ ε)/α, simplified with α² + σ² = 1 (no division by α).
        return (pred - sigma * x_t) / alpha
    if source == "x0":
        return (alpha * x_t - pred) / sigma
    raise LargoError(f"unknown prediction target {source!r}; valid: {', '.join(PREDICTIONS)}")


_CONVERTERS = {"x0": to_x0, "eps": to_eps, "v": to_v}


def convert(pred: Tensor, source: str, target: str, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Re-express a prediction of `source` as `target` (both in {eps, x0, v})."""
    check_prediction(source)
    return _CONVERTERS[check_prediction(target)](pred, source, x_t, alpha, sigma)


def training_target(prediction: str, x0: Tensor, noise: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """What the network regresses onto for x_t = α x0 + σ noise."""
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        return alpha * noise - sigma * x0
    raise LargoError(f"unknown prediction target {prediction!r}; valid: {', '.join(PREDICTIONS)}")
