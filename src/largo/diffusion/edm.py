"""The EDM formulation (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"),
and EDM2's learned per-σ uncertainty weighting (Karras et al. 2024, "Analyzing and Improving the Training
Dynamics of Diffusion Models").

In the σ view x_σ = x0 + σ ε the denoiser is D(x_σ; σ) = c_skip(σ) x_σ + c_out(σ) F(c_in(σ) x_σ; c_noise(σ)), with

    c_skip = σ_d² / (σ² + σ_d²)      c_out = σ σ_d / sqrt(σ² + σ_d²)      c_in = 1 / sqrt(σ² + σ_d²)

so the network's input and its training target (x0 - c_skip x_σ) / c_out both have unit variance at every σ.
Training draws ln σ ~ N(P_mean, P_std²) and weights the x0-error by λ(σ) = 1 / c_out², i.e. the F-error uniformly.
With the uncertainty weighting the per-σ loss becomes ‖F - target‖² / e^u(σ) + u(σ), where u is a tiny learned
function of c_noise (Fourier features and one linear layer): the σ levels that stay hard are weighted down, so
every level contributes about equally to the gradient.

c_noise: EDM feeds ln(σ)/4 to its U-Net; ours embeds timesteps made for t ∈ [0, 1000) with sinusoids of periods
up to 10,000, so it gets 250 ln σ (the same quantity, ×1000): σ ∈ [0.002, 80] spans t ≈ [-1554, 1096].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

NOISE_SCALE = 250.0  # c_noise = NOISE_SCALE · ln σ (see the module docstring)


def preconditioning(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in, c_noise) for σ (any shape, any float dtype)."""
    s2, d2 = sigma * sigma, sigma_data * sigma_data
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / (s2 + d2).sqrt()
    c_in = 1.0 / (s2 + d2).sqrt()
    c_noise = NOISE_SCALE * sigma.log()
    return c_skip, c_out, c_in, c_noise


def call_preconditioned(net: nn.Module, x_sigma: Tensor, sigma: Tensor, y: Tensor | None,
                        sigma_data: float) -> Tensor:
    """The network's raw output F at x_σ (B, C, H, W) and σ (B,), in the net's dtype. Callers mix F (guidance is
    affine in F at fixed x_σ) and turn it into D with `denoised`."""
    shape = (-1,) + (1,) * (x_sigma.ndim - 1)
    _, _, c_in, c_noise = preconditioning(sigma, sigma_data)
    return net(x_sigma * c_in.reshape(shape).to(x_sigma.dtype), c_noise.to(torch.float32), y)


def denoised(out: Tensor, x_sigma: Tensor, sigma: Tensor, sigma_data: float) -> Tensor:
    """D = c_skip x_σ + c_out F, in the dtype of x_σ."""
    shape = (-1,) + (1,) * (x_sigma.ndim - 1)
    c_skip, c_out, _, _ = preconditioning(sigma.to(x_sigma.dtype), sigma_data)
    return c_skip.reshape(shape) * x_sigma + c_out.reshape(shape) * out.to(x_sigma.dtype)


def training_sigmas(n: int, p_mean: float, p_std: float, device: torch.device | str) -> Tensor:
    """n noise levels with ln σ ~ N(P_mean, P_std²), float32, from the global RNG (one randn call)."""
    return (torch.randn(n, device=device) * p_std + p_mean).exp()


class UncertaintyWeight(nn.Module):
    """u(σ): EDM2's learned log-variance of the loss at each noise level, from c_noise.

    Fixed random Fourier features (seeded, so every run and every process starts alike) and one linear layer,
    initialised to zero (u = 0: the plain EDM weighting until it learns)."""

    def __init__(self, channels: int = 128, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", 2 * math.pi * torch.randn(channels, generator=g))
        self.register_buffer("phases", 2 * math.pi * torch.rand(channels, generator=g))
        self.linear = nn.Linear(channels, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, sigma: Tensor) -> Tensor:
        c = (sigma.float().log() / 4).reshape(-1, 1)  # EDM's c_noise: unit-scale input for the Fourier features
        features = torch.cos(c * self.freqs + self.phases) * math.sqrt(2)
        return self.linear(features).reshape(-1)


def edm_loss_per_sample(pred: Tensor, x0: Tensor, x_sigma: Tensor, sigma: Tensor, sigma_data: float) -> Tensor:
    """Mean over pixels of (F - F_target)², float32, where F_target = (x0 - c_skip x_σ) / c_out: equal to
    λ(σ) ‖D - x0‖² with EDM's λ(σ) = (σ² + σ_d²) / (σ σ_d)², without dividing a small error by a small c_out."""
    shape = (-1,) + (1,) * (x0.ndim - 1)
    c_skip, c_out, _, _ = preconditioning(sigma.float(), sigma_data)
    target = (x0.float() - c_skip.reshape(shape) * x_sigma.float()) / c_out.reshape(shape)
    return (pred.float() - target).pow(2).flatten(1).mean(1)
