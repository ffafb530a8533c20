"""The denoising training loss (one draw of t, noise and label dropout per call)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from largo.config import WEIGHTINGS, DiffusionConfig
from largo.diffusion import edm
from largo.diffusion.parameterization import check_prediction, to_x0, training_target
from largo.diffusion.schedules import NoiseSchedule
from largo.errors import LargoError
from largo.runtime import model_num_classes


def min_snr_weight(snr: Tensor, gamma: float, prediction: str) -> Tensor:
    """Min-SNR-γ (Hang et al. 2023) expressed for each target, so that the implied x0-space weight is min(snr, γ).

    An ε-error is an x0-error times snr, a v-error times (snr + 1); dividing by those factors gives:
    eps: min(snr, γ)/snr = min(1, γ/snr)  (written this way so snr = 0 at zero terminal SNR gives 1, not 0/0),
    v: min(snr, γ)/(snr + 1),  x0: min(snr, γ).
    """
    if prediction == "eps":
        return (gamma / snr).clamp(max=1.0)
    if prediction == "v":
        return snr.clamp(max=gamma) / (snr + 1.0)
    if prediction == "x0":
        return snr.clamp(max=gamma)
    raise LargoError(f"unknown prediction target {prediction!r}")


@dataclass
class LossParts:
    """What one loss call drew and predicted, for auxiliary losses on the predicted clean image."""

    t: Tensor  # (B,) timesteps: int64, or float (the schedule's t of each σ) for EDM
    x0: Tensor  # (B, C, H, W) the clean batch
    x0_hat: Tensor  # (B, C, H, W) float32 estimate of x0 from the prediction (carries the graph)


def diffusion_loss(net: nn.Module, x0: Tensor, y: Tensor, schedule: NoiseSchedule, cfg: DiffusionConfig,
                   shard: tuple[int, int] = (0, 1), parts: bool = False,
                   uncertainty: nn.Module | None = None) -> Tensor | tuple[Tensor, LossParts]:
    """Scalar float32 loss: batch mean of the (optionally min-SNR-weighted) per-sample MSE.

    prediction "edm" draws σ instead of t (see `edm_loss`); `uncertainty` is its learned u(σ) when
    loss_weighting is "uncertainty".

    Randomness comes from the GLOBAL torch RNG on x0's device, in this order: t ~ U{0..T-1}, noise ~ N(0, I),
    then (if p_uncond > 0) the label-dropout mask; so restoring the RNG states reproduces a step exactly.
    Dropped labels become the null class `net.num_classes`.

    `shard=(rank, world)`: x0 is this rank's slice [rank::world] of a global batch; every rank draws the
    randomness of the whole global batch and keeps its slice, so W processes see exactly what one would.
    `parts=True` also returns the timesteps and x̂0 (`LossParts`), drawing no extra randomness.
    """
    check_prediction(cfg.prediction)
    if schedule.num_timesteps != cfg.timesteps:
        raise LargoError(f"schedule has {schedule.num_timesteps} steps but the config says {cfg.timesteps}")
    if cfg.prediction == "edm":
        return edm_loss(net, x0, y, schedule, cfg, shard, parts, uncertainty)
    b, device = x0.shape[0], x0.device
    rank, world = shard
    n = b * world
    t = torch.randint(0, schedule.num_timesteps, (n,), device=device)[rank::world]
    noise = torch.randn((n, *x0.shape[1:]), device=device, dtype=x0.dtype)[rank::world]
    y = _drop_labels(net, y.to(device), cfg.p_uncond, n, shard)

    x_t = schedule.q_sample(x0, t, noise)
    pred = net(x_t, t.to(torch.float32), y)

    # Target and weights in float32 whatever the net's (autocast) output dtype is.
    abar = schedule.alpha_bar(t.cpu() if schedule.betas.device.type == "cpu" else t)
    shape = (b,) + (1,) * (x0.ndim - 1)
    alpha = abar.sqrt().to(torch.float32).to(device).reshape(shape)
    sigma = (1.0 - abar).sqrt().to(torch.float32).to(device).reshape(shape)
    target = training_target(cfg.prediction, x0.float(), noise.float(), alpha, sigma)
    per_sample = (pred.float() - target).pow(2).flatten(1).mean(1)
    if cfg.loss_weighting == "min_snr":
        snr = (abar / (1.0 - abar)).to(torch.float32).to(device)
        per_sample = per_sample * min_snr_weight(snr, cfg.min_snr_gamma, cfg.prediction)
    elif cfg.loss_weighting != "uniform":
        raise LargoError(f"unknown loss_weighting {cfg.loss_weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    if not parts:
        return per_sample.mean()
    return per_sample.mean(), LossParts(t, x0, to_x0(pred.float(), cfg.prediction, x_t.float(), alpha, sigma))


def _drop_labels(net: nn.Module, y: Tensor, p_uncond: float, n: int, shard: tuple[int, int]) -> Tensor:
    """Labels with a share p_uncond replaced by the null class (one rand(n) draw when p_uncond > 0)."""
    rank, world = shard
    y = y.to(dtype=torch.int64)
    if p_uncond > 0:
        drop = (torch.rand(n, device=y.device) < p_uncond)[rank::world]
        y = torch.where(drop, torch.full_like(y, model_num_classes(net)), y)
    return y


def edm_loss(net: nn.Module, x0: Tensor, y: Tensor, schedule: NoiseSchedule, cfg: DiffusionConfig,
             shard: tuple[int, int] = (0, 1), parts: bool = False,
             uncertainty: nn.Module | None = None) -> Tensor | tuple[Tensor, LossParts]:
    """EDM's loss (NVlabs/edm `EDMLoss`): ln σ ~ N(P_mean, P_std²), x_σ = x0 + σ ε, the preconditioned network's F
    regressed onto its unit-variance target (EDM's λ(σ) weighting). With `uncertainty` (EDM2) the per-sample
    loss is ℓ / e^u(σ) + u(σ). Randomness in this order: σ, noise, label dropout; sharded like `diffusion_loss`."""
    b, device = x0.shape[0], x0.device
    rank, world = shard
    n = b * world
    sigma = edm.training_sigmas(n, cfg.p_mean, cfg.p_std, device)[rank::world]
    noise = torch.randn((n, *x0.shape[1:]), device=device, dtype=x0.dtype)[rank::world]
    y = _drop_labels(net, y.to(device), cfg.p_uncond, n, shard)
    x_sigma = x0 + sigma.reshape(-1, *(1,) * (x0.ndim - 1)).to(x0.dtype) * noise
    pred = edm.call_preconditioned(net, x_sigma, sigma, y, cfg.sigma_data)
    per_sample = edm.edm_loss_per_sample(pred, x0, x_sigma, sigma, cfg.sigma_data)
    if cfg.loss_weighting == "uncertainty":
        if uncertainty is None:
            raise LargoError("loss_weighting 'uncertainty' needs the learned u(σ) (edm.UncertaintyWeight)")
        u = uncertainty(sigma)
        per_sample = per_sample / u.exp() + u
    elif cfg.loss_weighting != "uniform":
        raise LargoError(f"loss_weighting {cfg.loss_weighting!r} does not apply to prediction 'edm'; "
                         "valid: uniform (EDM's λ(σ)), uncertainty (EDM2)")
    if not parts:
        return per_sample.mean()
    x0_hat = edm.denoised(pred.float(), x_sigma.float(), sigma, cfg.sigma_data)
    return per_sample.mean(), LossParts(schedule.sigma_to_t(sigma.double()).to(device), x0, x0_hat)
