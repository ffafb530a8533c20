"""Discrete variance-preserving noise schedules: ᾱ_t, α_t, σ_t, λ_t, inference timestep grids and the σ view.

Conventions (shared by the loss, the denoiser and every sampler):
- timesteps are 0-indexed, t ∈ {0, …, T-1}; `alphas_cumprod[t]` = ᾱ_t = ∏_{s≤t} (1 - β_s);
- x_t = α_t x0 + σ_t ε with α_t = sqrt(ᾱ_t), σ_t = sqrt(1 - ᾱ_t), λ_t = log(α_t² / σ_t²) (the log-SNR);
- the "σ view" used by EDM/Karras samplers is x_σ = x_t / α_t = x0 + σ ε with σ = sqrt((1 - ᾱ) / ᾱ) = exp(-λ/2).

Float timesteps (t = 3.25) are evaluated by linear interpolation of λ between the two neighbouring integer
steps, which is exactly the inverse of `sigma_to_t` (linear in log σ = -λ/2), so α(sigma_to_t(σ)) = 1/sqrt(1+σ²).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from largo.config import SCHEDULES, SPACINGS, DiffusionConfig
from largo.errors import LargoError

# Largest finite σ used by the σ view when ᾱ_{T-1} == 0 (zero terminal SNR); same value as diffusers' Euler.
_ZTSNR_ALPHA_BAR = 2.0**-24


def _linear_betas(T: int) -> Tensor:
    # improved-diffusion: DDPM's 1e-4..0.02 over 1000 steps, rescaled so other T give a similar ᾱ curve.
    # For T < 20 the scaled betas pass 1, so they are clipped like the cosine schedule's.
    scale = 1000.0 / T
    return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64).clamp(max=0.999)


def _betas_from_alpha_bar(fn, T: int, max_beta: float = 0.999) -> Tensor:
    # β_i = 1 - ᾱ((i+1)/T) / ᾱ(i/T), clipped so the last steps do not become singular.
    s = torch.arange(T + 1, dtype=torch.float64) / T
    abar = fn(s)
    return (1.0 - abar[1:] / abar[:-1]).clamp(0.0, max_beta)


def _cosine_abar(s: Tensor, offset: float = 0.008) -> Tensor:
    # Nichol & Dhariwal 2021, eq. 17 (diffusers "squaredcos_cap_v2").
    return torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2


def _sigmoid_abar(s: Tensor, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Tensor:
    # Jabri et al. 2022 (RIN), appendix: γ(t) = (σ(end/τ) - σ((t(end-start)+start)/τ)) / (σ(end/τ) - σ(start/τ)).
    v_start, v_end = torch.sigmoid(torch.tensor(start / tau)), torch.sigmoid(torch.tensor(end / tau))
    out = (v_end - torch.sigmoid((s * (end - start) + start) / tau)) / (v_end - v_start)
    return out.to(torch.float64)


def _karras_betas(T: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    # Karras et al. 2022 eq. 5 over the T steps, ascending: σ_i = (σ_min^(1/ρ) + i/(T-1) (σ_max^(1/ρ) - σ_min^(1/ρ)))^ρ
    # and ᾱ_i = 1 / (1 + σ_i²); a uniform grid in t is then EDM's σ grid, for every sampler.
    ramp = torch.linspace(0, 1, T, dtype=torch.float64)
    sigmas = (sigma_min ** (1 / rho) + ramp * (sigma_max ** (1 / rho) - sigma_min ** (1 / rho))) ** rho
    abar = 1.0 / (1.0 + sigmas**2)
    return 1.0 - abar / torch.cat([abar.new_ones(1), abar[:-1]])


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Lin et al. 2023, algorithm 1: shift/scale sqrt(ᾱ) so that ᾱ_{T-1} = 0 and ᾱ_0 is unchanged."""
    sqrt_abar = torch.cumprod(1.0 - betas, 0).sqrt()
    a0, aT = sqrt_abar[0].clone(), sqrt_abar[-1].clone()
    sqrt_abar = (sqrt_abar - aT) * a0 / (a0 - aT)
    abar = sqrt_abar**2
    alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])
    return 1.0 - alphas


class NoiseSchedule:
    """A discrete VP schedule with T steps. Build it with `NoiseSchedule.make(...)` or from explicit betas."""

    def __init__(self, betas: Tensor, name: str = "custom"):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 2 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise LargoError("noise schedule: betas must be a 1-D tensor of T >= 2 values in (0, 1]")
        self.name = name
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, 0)
        # log-SNR per step; -inf where ᾱ = 0 (zero terminal SNR), kept exact rather than clamped.
        self.log_snrs = torch.log(self.alphas_cumprod) - torch.log1p(-self.alphas_cumprod)

    @classmethod
    def make(cls, kind: str = "linear", timesteps: int = 1000, zero_terminal_snr: bool = False,
             sigma_range: tuple[float, float] = (0.002, 80.0)) -> NoiseSchedule:
        """`sigma_range` = (σ_min, σ_max) of the karras schedule (ignored by the others)."""
        if timesteps < 2:
            raise LargoError(f"noise schedule: timesteps must be >= 2, got {timesteps}")
        if kind == "linear":
            betas = _linear_betas(timesteps)
        elif kind == "cosine":
            betas = _betas_from_alpha_bar(_cosine_abar, timesteps)
        elif kind == "sigmoid":
            betas = _betas_from_alpha_bar(_sigmoid_abar, timesteps)
        elif kind == "karras":
            betas = _karras_betas(timesteps, *sigma_range)
        else:
            raise LargoError(f"unknown schedule {kind!r}; valid: {', '.join(SCHEDULES)}")
        if zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        return cls(betas, name=kind + ("+ztsnr" if zero_terminal_snr else ""))

    @classmethod
    def from_config(cls, cfg: DiffusionConfig) -> NoiseSchedule:
        """The schedule a run was trained with: the one place a schedule is built from a config."""
        return cls.make(cfg.schedule, cfg.timesteps, cfg.zero_terminal_snr, (cfg.sigma_min, cfg.sigma_max))

    # -- basic quantities ------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def __len__(self) -> int:
        return len(self.betas)

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.name!r}, T={self.num_timesteps})"

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """Move the float64 tables (in place; returns self). CPU is fine: every method moves what it gathers."""
        self.betas = self.betas.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        self.log_snrs = self.log_snrs.to(device)
        return self

    def alpha_bar(self, t: Tensor | int | float) -> Tensor:
        """ᾱ(t), float64, on t's device (schedule's device for Python numbers). Float t: λ interpolated."""
        t = torch.as_tensor(t, device=self.betas.device)
        out_device = t.device
        t = t.to(self.betas.device)
        if not t.is_floating_point():
            return self.alphas_cumprod[t.long()].to(out_device)
        t = t.to(torch.float64).clamp(0, self.num_timesteps - 1)
        lo = t.floor().long()
        hi = (lo + 1).clamp(max=self.num_timesteps - 1)
        frac = t - lo
        lam_lo, lam_hi = self.log_snrs[lo], self.log_snrs[hi]
        # where() keeps integer points exact and avoids 0·(-inf) = nan next to a zero-terminal-SNR step.
        lam = torch.where(frac > 0, lam_lo + frac * (lam_hi - lam_lo), lam_lo)
        abar = torch.where(frac > 0, torch.sigmoid(lam), self.alphas_cumprod[lo])
        return abar.to(out_device)

    def alpha(self, t: Tensor | int | float) -> Tensor:
        """α_t = sqrt(ᾱ_t) (float64)."""
        return self.alpha_bar(t).sqrt()

    def sigma(self, t: Tensor | int | float) -> Tensor:
        """σ_t = sqrt(1 - ᾱ_t) (float64)."""
        return (1.0 - self.alpha_bar(t)).sqrt()

    def log_snr(self, t: Tensor | int | float) -> Tensor:
        """λ_t = log(α_t² / σ_t²) (float64); -inf where ᾱ = 0."""
        abar = self.alpha_bar(t)
        return torch.log(abar) - torch.log1p(-abar)

    def snr(self, t: Tensor | int | float) -> Tensor:
        abar = self.alpha_bar(t)
        return abar / (1.0 - abar)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = α_t x0 + σ_t ε, in x0's dtype and on x0's device; t has shape (B,) (or is a scalar)."""
        abar = self.alpha_bar(torch.as_tensor(t).to(self.betas.device))
        shape = (-1,) + (1,) * (x0.ndim - 1) if abar.ndim == 1 else ()
        # Cast on the schedule's device first: some accelerators (MPS) have no float64.
        a = abar.sqrt().to(x0.dtype).to(x0.device).reshape(shape)
        s = (1.0 - abar).sqrt().to(x0.dtype).to(x0.device).reshape(shape)
        return a * x0 + s * noise.to(x0.dtype)

    # -- inference grids -------------------------------------------------------------------------
    def timesteps(self, steps: int, spacing: str = "trailing") -> Tensor:
        """`steps` integer timesteps, descending, exactly as diffusers' DDIM/DDPM `timestep_spacing`.

        leading:  (arange(steps) * (T // steps))[::-1]            (ends at 0; steps_offset = 0)
        linspace: round(linspace(0, T-1, steps))[::-1]             (starts at T-1, ends at 0)
        trailing: round(arange(T, 0, -T/steps)) - 1                (starts at T-1, the ZTSNR paper's choice)
        """
        T = self.num_timesteps
        if not 1 <= steps <= T:
            raise LargoError(f"steps must be in [1, {T}], got {steps}")
        if spacing == "leading":
            ts = torch.arange(steps, dtype=torch.int64) * (T // steps)
            ts = ts.flip(0)
        elif spacing == "linspace":
            ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().flip(0)
        elif spacing == "trailing":
            # numpy's arange(T, 0, -ratio) with float ratio; built from the index to avoid accumulation error.
            n = math.ceil(T / (T / steps))
            ts = torch.round(T - torch.arange(n, dtype=torch.float64) * (T / steps)).long() - 1
            ts = ts[ts >= 0]
        else:
            raise LargoError(f"unknown spacing {spacing!r}; valid: {', '.join(SPACINGS)}")
        return ts

    # -- continuous σ view (EDM / k-diffusion) ---------------------------------------------------
    @property
    def sigmas(self) -> Tensor:
        """σ_t = sqrt((1 - ᾱ_t) / ᾱ_t) per step, ascending.

        With zero terminal SNR (ᾱ_{T-1} = 0, σ = ∞) the last step uses ᾱ = min(2^-24, ᾱ_{T-2}/2) instead, a
        large finite σ as in diffusers' Euler scheduler, so Karras grids and `sigma_to_t` stay finite.
        """
        abar = self.alphas_cumprod
        if bool((abar == 0).any()):
            floor = min(_ZTSNR_ALPHA_BAR, float(abar[abar > 0].min()) / 2)
            abar = torch.where(abar == 0, torch.full_like(abar, floor), abar)
        return ((1.0 - abar) / abar).sqrt()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def karras_sigmas(self, steps: int, rho: float = 7.0) -> Tensor:
        """Karras et al. 2022 eq. 5: `steps` σ from sigma_max down to sigma_min, then a final 0 (steps + 1 values)."""
        if steps < 1:
            raise LargoError(f"steps must be >= 1, got {steps}")
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / rho), self.sigma_max ** (1 / rho)
        sig = (hi + ramp * (lo - hi)) ** rho
        if steps == 1:
            sig = torch.tensor([self.sigma_max], dtype=torch.float64)
        return torch.cat([sig, sig.new_zeros(1)])

    def sigma_to_t(self, sigma: Tensor | float) -> Tensor:
        """Continuous timestep for σ, linear in log σ between neighbouring steps (k-diffusion DiscreteSchedule).

        σ outside [sigma_min, sigma_max] is clamped to t ∈ [0, T-1]. Returns float64 on σ's device.
        """
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        out_device = sigma.device
        log_sigmas = self.sigmas.log()
        log_sigma = sigma.to(log_sigmas.device).log().reshape(-1)
        # index of the last step with log σ_i <= log σ (k-diffusion's cumsum/argmax, via a sorted search)
        low = (torch.searchsorted(log_sigmas, log_sigma, right=True) - 1).clamp(0, len(log_sigmas) - 2)
        lo_val, hi_val = log_sigmas[low], log_sigmas[low + 1]
        w = ((lo_val - log_sigma) / (lo_val - hi_val)).clamp(0, 1)
        t = (1 - w) * low + w * (low + 1)
        return t.reshape(sigma.shape).to(out_device)
