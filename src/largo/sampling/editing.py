"""Editing with a trained model, written against the schedule and the `Denoiser` (so CFG, the guidance interval and
autoguidance apply unchanged):

- image-to-image (SDEdit, Meng et al. 2022): noise an image to a strength (0 = the image, 1 = plain sampling) and
  walk the rest of the sampler's grid toward a class, the same or another;
- inpainting: fill the masked pixels so that they agree with the rest, by naive replacement of the known pixels
  at every step (`replace`), RePaint's resampling (Lugmayr et al. 2022: `repaint`, jumps back up the grid), or
  DDNM's range-null-space projection of each x̂0 (Wang et al. 2023: `ddnm`, no extra evaluations); the unmasked
  pixels come back exactly (copied from the input);
- class interpolation at a fixed seed (the class embeddings mixed, so the guidance target too) and seed
  interpolation (spherical interpolation of the initial noise).

Images are uint8 (N, C, H, W) in and out, as everywhere outside the model. Pixel models only."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from largo.config import RunConfig
from largo.diffusion.denoiser import Denoiser
from largo.diffusion.samplers import ImageNoise, ddim_std, sample
from largo.diffusion.schedules import NoiseSchedule
from largo.errors import LargoError
from largo.images import to_float, to_uint8
from largo.runtime import sampling_autocast
from largo.sampling.generate import image_shape, make_denoiser, trajectory_length
from largo.sampling.options import SamplingOptions

INPAINT_METHODS = ("replace", "repaint", "ddnm")
INPAINT_ETA = {"replace": 1.0, "repaint": 1.0, "ddnm": 0.85}  # ancestral (DDPM) steps; DDNM's own η
REPAINT_JUMP, REPAINT_RESAMPLE = 5, 5  # RePaint's j and r, scaled from its 250-step grid (j = 10, r = 10) to ~20 steps


@dataclass
class EditResult:
    images: Tensor  # uint8 (N, C, H, W)
    evaluations: float  # network evaluations per image (a guided step with CFG counts 2), the guide's included
    steps: int  # denoising steps walked per image (RePaint: with its resampling)


# -- checks ----------------------------------------------------------------------------------------------------
def check_strength(strength: float) -> float:
    s = float(strength)
    if not 0.0 <= s <= 1.0:  # NaN fails too
        raise LargoError(f"strength must be in [0, 1] (0 = the image, 1 = plain sampling), got {strength}")
    return s


def check_images(images: Tensor, run_cfg: RunConfig, what: str = "image") -> Tensor:
    """uint8 (N, C, H, W) of the model's channels and size, else one line saying what it is and what is needed."""
    if run_cfg.data.autoencoder:
        raise LargoError("editing works on pixel models; this is a latent diffusion model")
    c, h, w = image_shape(run_cfg)
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4:
        raise LargoError(f"the {what}s must be a uint8 tensor (N, C, H, W)")
    if tuple(images.shape[1:]) != (c, h, w):
        _, ci, hi, wi = images.shape
        raise LargoError(f"the {what} is {hi}×{wi} with {ci} channel(s); this model draws {h}×{w} with {c}")
    return images


def check_masks(masks: Tensor, images: Tensor) -> Tensor:
    """Masks as bool (N, 1, H, W), True = fill: a bool tensor, or uint8 where ≥ 128 is fill (a white stroke on
    black); (H, W) or (1, 1, H, W) applies to every image."""
    if not torch.is_tensor(masks) or masks.dtype not in (torch.bool, torch.uint8):
        raise LargoError("the mask must be a bool or uint8 tensor (white = fill)")
    m = masks >= 128 if masks.dtype == torch.uint8 else masks
    m = m.reshape(1, 1, *m.shape) if m.ndim == 2 else m
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[0] not in (1, len(images)):
        raise LargoError(f"the mask must be (H, W) or (N, 1, H, W), got {tuple(masks.shape)}")
    if m.shape[-2:] != images.shape[-2:]:
        raise LargoError(f"the mask is {m.shape[-2]}×{m.shape[-1]}, the image {images.shape[-2]}×{images.shape[-1]};"
                         " they must be the same size")
    return m.expand(len(images), 1, *m.shape[-2:])


def _labels(labels: Sequence[int] | Tensor, n: int, run_cfg: RunConfig) -> Tensor:
    y = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    y = y.expand(n) if len(y) == 1 else y
    if len(y) != n:
        raise LargoError(f"got {len(y)} classes for {n} images")
    k = run_cfg.model.num_classes
    if k == 0 or bool(((y < 0) | (y >= k)).any()):
        raise LargoError(f"classes must be in [0, {k - 1}]" if k else "editing toward a class needs a "
                         "class-conditional model")
    return y


def _setup(net: nn.Module, run_cfg: RunConfig, options: SamplingOptions | None, overrides: dict,
           device: torch.device | str | None) -> tuple[SamplingOptions, torch.device, nn.Module]:
    options = options or SamplingOptions.resolve(run_cfg, **overrides)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    return options, device, net.to(device).eval()


# -- image-to-image (SDEdit) -----------------------------------------------------------------------------------
def sdedit_start(run_cfg: RunConfig, options: SamplingOptions, strength: float) -> tuple[int, int]:
    """(grid points skipped, steps walked): the last round(strength · n) of the sampler's n steps, at least one."""
    n = trajectory_length(run_cfg, options)
    walked = 0 if strength == 0 else max(1, round(strength * n))
    return n - walked, walked


@torch.no_grad()
def image_to_image(net: nn.Module, run_cfg: RunConfig, images: Tensor, labels: Sequence[int] | Tensor,
                   strength: float, seeds: Sequence[int] | None = None, options: SamplingOptions | None = None, *,
                   batch_size: int = 64, device: torch.device | str | None = None,
                   callback: Callable[[int, int], None] | None = None, **overrides) -> EditResult:
    """SDEdit: each image noised to the level of the sampler's grid point at `strength` (the noise from its
    seed) and denoised toward its label. Strength 0 returns the images; 1 is plain sampling from the seeds.
    `callback(done, total)` follows the steps of all batches (progress; raising there stops)."""
    strength = check_strength(strength)
    images = check_images(images, run_cfg)
    y_all = _labels(labels, len(images), run_cfg)
    seeds = list(range(len(images))) if seeds is None else [int(s) for s in seeds]
    options, device, net = _setup(net, run_cfg, options, overrides, device)
    start, walked = sdedit_start(run_cfg, options, strength)
    if walked == 0:
        return EditResult(images.clone(), 0.0, 0)
    denoiser = make_denoiser(net, run_cfg, options)
    out, batches = [], -(-len(images) // batch_size)
    with sampling_autocast(device, options.precision):
        for b, i in enumerate(range(0, len(images), batch_size)):
            step = None if callback is None else lambda done, n, b=b: callback(b * n + done, batches * n)
            x0 = to_float(images[i:i + batch_size]).to(device)
            x = sample(denoiser, x0.shape, y_all[i:i + batch_size].to(device), sampler=options.sampler,
                       steps=options.steps, eta=options.eta, spacing=options.spacing, seeds=seeds[i:i + batch_size],
                       device=device, clip_x0=options.clip_x0, start=start, init_x0=None if strength == 1 else x0,
                       callback=step)
            out.append(to_uint8(x).cpu())
    return EditResult(torch.cat(out), _per_image(denoiser, len(images)), walked)


def _per_image(denoiser: Denoiser, n: int) -> float:
    return (denoiser.evaluations + denoiser.guide_evaluations) / n


# -- inpainting --------------------------------------------------------------------------------------------------
def repaint_path(n: int, jump: int, resample: int) -> list[int]:
    """RePaint's walk over grid indices 0 (noisiest) … n (clean), after its `get_schedule_jump`: after reaching each
    time t ∈ {0, j, 2j, …} < n − j (t = n − 1 − index), go back up j steps, `resample` − 1 times."""
    if jump < 1 or resample < 1:
        raise LargoError(f"RePaint needs jump_length >= 1 and resample >= 1, got {jump} and {resample}")
    jumps = {t: resample - 1 for t in range(0, n - jump, jump)}
    t, times = n, []
    while t >= 1:
        t -= 1
        times.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump):
                t += 1
                times.append(t)
    return [n - 1 - t for t in times] + [n]


@dataclass
class _Inpaint:
    denoiser: Denoiser
    timesteps: Tensor
    abar: list[float]  # one per grid point, then 1.0 (clean)
    method: str
    eta: float
    clip_x0: bool


def _inpaint_batch(job: _Inpaint, x_src: Tensor, known: Tensor, y: Tensor, seeds: list[int], path: list[int],
                   callback: Callable[[int], None] | None = None) -> tuple[Tensor, int]:
    """Walk `path` (grid indices); a step down denoises (DDIM form with η), a step up re-noises (RePaint)."""
    noise = ImageNoise(seeds, x_src.shape[1:], x_src.device)
    x, i, n = noise.draw(), path[0], len(job.abar) - 1
    x_src, known = x_src.to(torch.float64), known.to(torch.float64)
    steps = 0
    for j in path[1:]:
        a_i, a_j = job.abar[i], job.abar[j]
        if j < i:  # back up one grid point: x_j ~ q(x_j | x_i)
            x = math.sqrt(a_j / a_i) * x + math.sqrt(1 - a_j / a_i) * noise.draw()
        else:
            d = job.denoiser(x, job.timesteps[i].to(x.device), y)
            x0, eps = d.x0, d.eps
            if job.clip_x0:
                x0 = x0.clamp(-1, 1)
                eps = (x - d.alpha * x0) / d.sigma
            if job.method == "ddnm":  # range-null-space: the known pixels of x̂0 are the input's (A†y + (I − A†A) x̂0)
                x0 = known * x_src + (1 - known) * x0
            std = ddim_std(a_i, a_j, job.eta) if j < n else 0.0
            x = math.sqrt(a_j) * x0 + math.sqrt(max(1 - a_j - std**2, 0.0)) * eps
            if std > 0:
                x = x + std * noise.draw()
            if job.method != "ddnm":  # the known pixels replaced by the input noised to the new level
                x_known = x_src if j == n else math.sqrt(a_j) * x_src + math.sqrt(1 - a_j) * noise.draw()
                x = known * x_known + (1 - known) * x
            steps += 1
        i = j
        if callback is not None:
            callback(1)
    return x.to(torch.float32), steps


# long function: checks, the walk's path and the batch loop of one call, each a few lines
@torch.no_grad()
def inpaint(net: nn.Module, run_cfg: RunConfig, images: Tensor, masks: Tensor, labels: Sequence[int] | Tensor,
            seeds: Sequence[int] | None = None, options: SamplingOptions | None = None, *, method: str = "repaint",
            jump_length: int = REPAINT_JUMP, resample: int = REPAINT_RESAMPLE, eta: float | None = None,
            batch_size: int = 64, device: torch.device | str | None = None,
            callback: Callable[[int, int], None] | None = None, **overrides) -> EditResult:
    """Fill the pixels where `masks` is set (see `check_masks`) toward `labels`, on the grid of `options.steps`
    (its spacing) with ancestral steps of η (default: 1 for replace/repaint, 0.85 for ddnm). The other pixels are
    the input's, bit for bit. `options.sampler` is not used: each method is its own walk. `callback(done,
    total)` follows the moves of the walk over all batches."""
    if method not in INPAINT_METHODS:
        raise LargoError(f"unknown inpainting method {method!r}; valid: {', '.join(INPAINT_METHODS)}")
    images = check_images(images, run_cfg)
    fill = check_masks(masks, images)
    y_all = _labels(labels, len(images), run_cfg)
    seeds = list(range(len(images))) if seeds is None else [int(s) for s in seeds]
    options, device, net = _setup(net, run_cfg, options, overrides, device)
    eta = INPAINT_ETA[method] if eta is None else float(eta)
    if not 0 <= eta <= 1:
        raise LargoError(f"eta must be in [0, 1], got {eta}")
    sched = NoiseSchedule.from_config(run_cfg.diffusion)
    timesteps = sched.timesteps(options.steps, options.spacing)
    abar = sched.alphas_cumprod[timesteps].tolist() + [1.0]
    n = len(timesteps)
    path = repaint_path(n, jump_length, resample) if method == "repaint" else list(range(n + 1))
    denoiser = make_denoiser(net, run_cfg, options)
    job = _Inpaint(denoiser, timesteps, abar, method, eta, options.clip_x0)
    out, steps, moved = [], 0, [0]
    total = -(-len(images) // batch_size) * (len(path) - 1)

    def advance(k: int) -> None:
        moved[0] += k
        if callback is not None:
            callback(moved[0], total)

    with sampling_autocast(device, options.precision):
        for i in range(0, len(images), batch_size):
            sl = slice(i, i + batch_size)
            x, steps = _inpaint_batch(job, to_float(images[sl]).to(device), (~fill[sl]).to(device),
                                      y_all[sl].to(device), seeds[sl], path, advance)
            out.append(torch.where(fill[sl], to_uint8(x).cpu(), images[sl]))  # unmasked pixels: the input's
    return EditResult(torch.cat(out), _per_image(denoiser, len(images)), steps)


# -- interpolation -----------------------------------------------------------------------------------------------
def check_frames(frames: int) -> int:
    if not 2 <= int(frames) <= 64:
        raise LargoError(f"frames must be in [2, 64], got {frames}")
    return int(frames)


@torch.no_grad()
def interpolate_classes(net: nn.Module, run_cfg: RunConfig, class_a: int, class_b: int, frames: int = 8, seed: int = 0,
                        options: SamplingOptions | None = None, *, device: torch.device | str | None = None,
                        **overrides) -> Tensor:
    """uint8 (frames, C, H, W): one seed, the class embedding mixed (1 − λ) e_a + λ e_b for λ evenly from 0 to 1;
    guidance pushes toward the same mixture (its conditional branch sees it)."""
    frames = check_frames(frames)
    k = run_cfg.model.num_classes
    _labels([class_a, class_b], 2, run_cfg)
    options, device, net = _setup(net, run_cfg, options, overrides, device)
    lam = torch.linspace(0, 1, frames)
    weights = torch.zeros(frames, k + 1)
    weights[:, class_a] += 1 - lam
    weights[:, class_b] += lam
    with sampling_autocast(device, options.precision):
        x = sample(make_denoiser(net, run_cfg, options), (frames, *image_shape(run_cfg)), weights.to(device),
                   sampler=options.sampler, steps=options.steps, eta=options.eta, spacing=options.spacing,
                   seeds=[seed] * frames, device=device, clip_x0=options.clip_x0)
    return to_uint8(x).cpu()


def slerp(a: Tensor, b: Tensor, lam: float) -> Tensor:
    """Spherical interpolation between two noise tensors (linear where they are parallel)."""
    cos = float((a * b).sum() / (a.norm() * b.norm()))
    theta = math.acos(max(-1.0, min(1.0, cos)))
    if theta < 1e-6:
        return (1 - lam) * a + lam * b
    return (math.sin((1 - lam) * theta) * a + math.sin(lam * theta) * b) / math.sin(theta)


@torch.no_grad()
def interpolate_seeds(net: nn.Module, run_cfg: RunConfig, label: int, seed_a: int, seed_b: int, frames: int = 8,
                      options: SamplingOptions | None = None, *, device: torch.device | str | None = None,
                      **overrides) -> Tensor:
    """uint8 (frames, C, H, W) of one class, the initial noise slerp'ed from seed_a's to seed_b's (a deterministic
    sampler makes the strip continuous; an ancestral one draws its later noise from seed_a)."""
    frames = check_frames(frames)
    y = _labels([label], frames, run_cfg)
    options, device, net = _setup(net, run_cfg, options, overrides, device)
    shape = image_shape(run_cfg)
    ends = [ImageNoise([s], shape, device).draw()[0] for s in (seed_a, seed_b)]
    noise = torch.stack([slerp(ends[0], ends[1], float(lam)) for lam in torch.linspace(0, 1, frames)])
    with sampling_autocast(device, options.precision):
        x = sample(make_denoiser(net, run_cfg, options), (frames, *shape), y.to(device), sampler=options.sampler,
                   steps=options.steps, eta=options.eta, spacing=options.spacing, seeds=[seed_a] * frames,
                   device=device, clip_x0=options.clip_x0, init_noise=noise)
    return to_uint8(x).cpu()
