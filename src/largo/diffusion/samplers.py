"""Samplers, each a small step function over one shared loop (`sample`).

Discrete samplers (ddpm, ddim, dpmpp2m, dpmpp3m) walk `schedule.timesteps(steps, spacing)` and end on ᾱ = 1
(the "previous" of the last grid point is x0 itself, like diffusers' `set_alpha_to_one` / final sigma 0).
EDM samplers (euler, heun) walk a Karras σ grid in the σ view x_σ = x_t / α_t = x0 + σ ε, down to σ = 0.

All bookkeeping is float64; nothing is clamped unless `clip_x0=True` (x0 estimates to [-1, 1]); the returned
images are not clamped either (the caller quantizes). Randomness is per image (`ImageNoise`), so image i is
the same whatever batch it is generated in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from largo.config import check_sampling
from largo.diffusion.denoiser import Denoised, Denoiser
from largo.errors import LargoError

DDPM_VARIANCES = ("beta", "beta_tilde")


class ImageNoise:
    """N(0, I) draws where image i always comes from its own generator seeded with seeds[i].

    Each `draw()` returns one (B, *shape) float64 tensor (drawn in float32, the usual torch.randn stream).
    """

    def __init__(self, seeds: Sequence[int], shape: Sequence[int], device: torch.device | str):
        self.shape, self.device = tuple(shape), torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]

    def draw(self) -> Tensor:
        return torch.stack([
            torch.randn(self.shape, generator=g, device=self.device, dtype=torch.float32) for g in self.generators
        ]).to(torch.float64)


@dataclass
class _Run:
    """What every step function sees. `abar` has len(grid) + 1 entries, the last being 1 (clean data)."""

    denoiser: Denoiser
    labels: Tensor | None
    noise: ImageNoise
    eta: float
    ddpm_variance: str
    clip_x0: bool
    timesteps: Tensor | None = None  # discrete samplers
    abar: list[float] = field(default_factory=list)
    sigmas: list[float] = field(default_factory=list)  # EDM samplers (Karras grid, ends with 0)
    history: list[Tensor] = field(default_factory=list)  # x0 estimates, for multistep solvers

    @property
    def n(self) -> int:
        return len(self.timesteps) if self.timesteps is not None else len(self.sigmas) - 1

    def predict(self, x: Tensor, i: int) -> Denoised:
        d = self.denoiser(x, self.timesteps[i].to(x.device), self.labels)
        if self.clip_x0:
            d.x0 = d.x0.clamp(-1, 1)
            d.eps = (x - d.alpha * d.x0) / d.sigma  # keep ε consistent with the clipped x0
        return d

    def predict_sigma(self, x: Tensor, sigma: float) -> Tensor:
        x0 = self.denoiser.denoise_sigma(x, sigma, self.labels).x0
        return x0.clamp(-1, 1) if self.clip_x0 else x0


# -- discrete samplers -----------------------------------------------------------------------------
def _ddpm_step(run: _Run, i: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """Ancestral step t → prev on the (respaced) grid, with β_t = 1 - ᾱ_t/ᾱ_prev (diffusers DDPMScheduler)."""
    d = run.predict(x, i)
    a_t, a_prev = run.abar[i], run.abar[i + 1]
    beta = 1.0 - a_t / a_prev
    mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * d.x0 + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t)) * x
    if i == run.n - 1:
        return mean, d.x0  # the last step lands on x0: no noise
    var = beta if run.ddpm_variance == "beta" else (1 - a_prev) / (1 - a_t) * beta
    return mean + math.sqrt(var) * run.noise.draw(), d.x0


def ddim_std(a_t: float, a_prev: float, eta: float) -> float:
    """DDIM's σ_t(η) (Song et al. eq. 16); η = 1 gives the DDPM posterior std sqrt(β̃_t)."""
    return eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))


def _ddim_step(run: _Run, i: int, x: Tensor) -> tuple[Tensor, Tensor]:
    d = run.predict(x, i)
    a_t, a_prev = run.abar[i], run.abar[i + 1]
    std = ddim_std(a_t, a_prev, run.eta)
    x_next = math.sqrt(a_prev) * d.x0 + math.sqrt(1 - a_prev - std**2) * d.eps
    if run.eta > 0 and i < run.n - 1:  # std is 0 on the last step (ᾱ_prev = 1): draw nothing there
        x_next = x_next + std * run.noise.draw()
    return x_next, d.x0


def _half_lambda(abar: float) -> float:
    """DPM-Solver's λ = log(α/σ), with the endpoints ᾱ = 0 → -inf and ᾱ = 1 → +inf."""
    if abar <= 0:
        return -math.inf
    if abar >= 1:
        return math.inf
    return 0.5 * (math.log(abar) - math.log1p(-abar))


def _dpmpp_order(i: int, n: int, max_order: int) -> int:
    """diffusers' defaults: warm up from order 1; first order on the final step (final σ = 0); with fewer than
    15 steps the second-to-last step of a third-order solver is second order (lower_order_final)."""
    if i == 0 or i == n - 1:
        return 1
    if max_order == 2 or i == 1 or (i == n - 2 and n < 15):
        return 2
    return 3


def _dpmpp_step(run: _Run, i: int, x: Tensor, max_order: int) -> tuple[Tensor, Tensor]:
    """DPM-Solver++ multistep (Lu et al. 2022), data prediction, midpoint form as in diffusers."""
    d = run.predict(x, i)
    run.history = (run.history + [d.x0])[-3:]
    a_s, a_t = run.abar[i], run.abar[i + 1]
    if a_t >= 1:
        return d.x0, d.x0  # first-order step to σ = 0 is exactly x0
    lam = [_half_lambda(run.abar[j]) for j in range(max(i - 2, 0), i + 2)][::-1]  # λ_t, λ_s0, λ_s1, λ_s2
    alpha_t, sigma_t, sigma_s = math.sqrt(a_t), math.sqrt(1 - a_t), math.sqrt(1 - a_s)
    h = lam[0] - lam[1]
    phi = math.expm1(-h)  # e^{-h} - 1
    x_next = (sigma_t / sigma_s) * x - (alpha_t * phi) * run.history[-1]
    order = _dpmpp_order(i, run.n, max_order)
    m = run.history[::-1]  # m0, m1, m2
    if order == 2:
        r0 = (lam[1] - lam[2]) / h
        x_next = x_next - 0.5 * (alpha_t * phi) * (1.0 / r0) * (m[0] - m[1])
    elif order == 3:
        r0, r1 = (lam[1] - lam[2]) / h, (lam[2] - lam[3]) / h
        d1_0, d1_1 = (1.0 / r0) * (m[0] - m[1]), (1.0 / r1) * (m[1] - m[2])
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (1.0 / (r0 + r1)) * (d1_0 - d1_1)
        x_next = x_next + (alpha_t * (phi / h + 1.0)) * d1 - (alpha_t * ((phi + h) / h**2 - 0.5)) * d2
    return x_next, d.x0


# -- EDM samplers (σ view) -------------------------------------------------------------------------
def _euler_step(run: _Run, i: int, x: Tensor) -> tuple[Tensor, Tensor]:
    s, s_next = run.sigmas[i], run.sigmas[i + 1]
    x0 = run.predict_sigma(x, s)
    return x + (x - x0) / s * (s_next - s), x0


def _heun_step(run: _Run, i: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """Karras et al. 2022 alg. 1 (no churn): Euler predictor + trapezoid corrector, Euler on the step to σ = 0."""
    s, s_next = run.sigmas[i], run.sigmas[i + 1]
    x0 = run.predict_sigma(x, s)
    d = (x - x0) / s
    x_euler = x + d * (s_next - s)
    if s_next == 0:
        return x_euler, x0
    d2 = (x_euler - run.predict_sigma(x_euler, s_next)) / s_next
    return x + 0.5 * (d + d2) * (s_next - s), x0


StepFn = Callable[[_Run, int, Tensor], tuple[Tensor, Tensor]]
_STEPS: dict[str, StepFn] = {
    "ddpm": _ddpm_step,
    "ddim": _ddim_step,
    "dpmpp2m": lambda run, i, x: _dpmpp_step(run, i, x, 2),
    "dpmpp3m": lambda run, i, x: _dpmpp_step(run, i, x, 3),
    "euler": _euler_step,
    "heun": _heun_step,
}


def heun_intervals(steps: int) -> int:
    """Heun's `steps` is an NFE budget: k σ-intervals cost 2k - 1 evaluations, so k = (steps + 1) // 2."""
    return (steps + 1) // 2


def _check_args(denoiser: Denoiser, sampler: str, steps: int, eta: float, spacing: str, ddpm_variance: str):
    check_sampling({"sampler": sampler, "sample_steps": steps, "eta": eta, "spacing": spacing},
                   denoiser.schedule.num_timesteps, label=lambda k: "steps" if k == "sample_steps" else k)
    if ddpm_variance not in DDPM_VARIANCES:
        raise LargoError(f"unknown ddpm_variance {ddpm_variance!r}; valid: {', '.join(DDPM_VARIANCES)}")


# long function: the one sampling loop's arguments, their checks and documentation; the work is in the helpers
@torch.no_grad()
def sample(
    denoiser: Denoiser,
    shape: Sequence[int],
    labels: Tensor | None,
    sampler: str = "dpmpp2m",
    steps: int = 20,
    eta: float = 0.0,
    spacing: str = "trailing",
    seeds: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    return_trajectory: bool = False,
    ddpm_variance: str = "beta_tilde",
    progress: bool = False,
    clip_x0: bool = False,
    callback: Callable[[int, int], None] | None = None,
    start: int = 0,
    init_x0: Tensor | None = None,
    init_noise: Tensor | None = None,
) -> Tensor | tuple[Tensor, list[dict]]:
    """Generate a (B, C, H, W) float32 batch (nominally in [-1, 1], not clamped).

    steps: grid points (= network evaluations, ×2 with guidance batched into the same call) for every sampler
    except heun, where it is the NFE budget: (steps + 1) // 2 intervals using 2k - 1 ≤ steps evaluations.
    eta: DDIM only (0 = deterministic, 1 = DDPM posterior variance). spacing: discrete samplers only.
    ddpm_variance: "beta_tilde" (posterior β̃_t, diffusers "fixed_small") or "beta" (β_t, "fixed_large").
    seeds: one per image (default range(B)); image i's initial and step noise come only from seeds[i].
    Trajectory: one dict per step, {"t": float timestep, "x_t": state at the start of the step (VP scale),
    "x0_hat": the x0 estimate made there}, CPU float32.
    callback(done, total) runs after each step (progress; an exception raised there stops sampling: cancelling).
    Editing (SDEdit, interpolation): `start` skips the first grid points (σ intervals for euler/heun), and the
    walk begins at the first remaining one from `init_x0` (float images in [-1, 1]) noised to that level,
    α x0 + σ ε, with ε the image's own first draw; `init_noise` (B, C, H, W) replaces that draw (e.g. a
    spherical interpolation of two seeds' noise).
    """
    _check_args(denoiser, sampler, steps, eta, spacing, ddpm_variance)
    b = int(shape[0])
    seeds = list(range(b)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != b:
        raise LargoError(f"got {len(seeds)} seeds for {b} images")
    if device is None:
        device = next(iter(denoiser.net.parameters()), torch.empty(0)).device
    sched = denoiser.schedule
    run = _Run(denoiser, None if labels is None else torch.as_tensor(labels).to(device),
               ImageNoise(seeds, shape[1:], device), float(eta), ddpm_variance, clip_x0)
    if sampler in ("euler", "heun"):
        run.sigmas = sched.karras_sigmas(heun_intervals(steps) if sampler == "heun" else steps).tolist()
    else:
        run.timesteps = sched.timesteps(steps, spacing)
        run.abar = sched.alphas_cumprod[run.timesteps].tolist() + [1.0]
    x = _initial_state(run, start, init_x0, init_noise)

    trajectory: list[dict] = []
    step_fn = _STEPS[sampler]
    indices = range(run.n)
    if progress:
        indices = tqdm(indices, desc=f"{sampler} {steps}", leave=False)
    for i in indices:
        x_next, x0_hat = step_fn(run, i, x)
        if return_trajectory:
            trajectory.append(_record(run, i, x, x0_hat))
        x = x_next
        if callback is not None:
            callback(i + 1, run.n)
    out = x.to(torch.float32)
    return (out, trajectory) if return_trajectory else out


def _initial_state(run: _Run, start: int, init_x0: Tensor | None, init_noise: Tensor | None) -> Tensor:
    """The state the walk begins from, after dropping the grid's first `start` points (see `sample`)."""
    if not 0 <= start < run.n:
        raise LargoError(f"start must be in [0, {run.n - 1}] (the sampler has {run.n} steps), got {start}")
    if run.timesteps is not None:
        run.timesteps, run.abar = run.timesteps[start:], run.abar[start:]
    else:
        run.sigmas = run.sigmas[start:]
    eps = run.noise.draw() if init_noise is None else init_noise.to(run.noise.device, torch.float64)
    if tuple(eps.shape[1:]) != run.noise.shape or eps.shape[0] != len(run.noise.generators):
        batch = (len(run.noise.generators), *run.noise.shape)
        raise LargoError(f"init_noise has shape {tuple(eps.shape)}, the batch {batch}")
    if run.timesteps is None:  # σ view: x_σ = x0 + σ ε, or x_T / α_T with x_T ~ N(0, I)
        s = run.sigmas[0]
        return eps * math.sqrt(1 + s * s) if init_x0 is None else init_x0.to(eps) + s * eps
    a = run.abar[0]
    return eps if init_x0 is None else math.sqrt(a) * init_x0.to(eps) + math.sqrt(1 - a) * eps


def _record(run: _Run, i: int, x: Tensor, x0_hat: Tensor) -> dict:
    if run.timesteps is not None:
        t, x_t = float(run.timesteps[i]), x
    else:  # σ view → VP scale, and the continuous timestep the net saw
        s = run.sigmas[i]
        t, x_t = float(run.denoiser.schedule.sigma_to_t(torch.tensor(s))), x / math.sqrt(1 + s * s)
    return {"t": t, "x_t": x_t.to("cpu", torch.float32), "x0_hat": x0_hat.to("cpu", torch.float32)}
