"""The forward (noising) process as a picture: x_t of real images at evenly spaced t, one block per schedule."""

from __future__ import annotations

import torch
from PIL import Image

from largo.config import SCHEDULES
from largo.data import load_images
from largo.diffusion.schedules import NoiseSchedule
from largo.draw.grid import Section, annotated_grid
from largo.errors import LargoError
from largo.images import to_float, to_uint8


def forward_timesteps(timesteps: int, frames: int) -> list[int]:
    """`frames` evenly spaced integer timesteps from 0 to T-1 (distinct, so at most T of them)."""
    if not 2 <= frames <= timesteps:
        raise LargoError(f"a forward strip needs 2 to {timesteps} frames (one per distinct timestep of "
                         f"T = {timesteps}), got {frames}")
    return torch.linspace(0, timesteps - 1, frames, dtype=torch.float64).round().long().tolist()


def forward_process(x0: torch.Tensor, schedule: NoiseSchedule, frames: int, seed: int = 0
                    ) -> tuple[list[int], list[float], torch.Tensor]:
    """x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε for float images x0 in [-1, 1] (N, C, H, W) at `frames` evenly spaced t.

    Frame 0 stands for t = 0 and is the input itself (x0, ᾱ = 1); frames 1… are q_sample at their timestep, the
    last at t = T-1, where x_t ≈ ε ~ N(0, I). One seeded ε per image is shared by all frames (and by every
    schedule called with the same seed), so a strip shows one noising path.
    Returns (timesteps, ᾱ per frame, frames as a float tensor (F, N, C, H, W))."""
    ts = forward_timesteps(schedule.num_timesteps, frames)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32)
    x0 = x0.float().cpu()
    out = [x0.clone()]
    abars = [1.0]
    for t in ts[1:]:
        tt = torch.full((len(x0),), t, dtype=torch.long)
        out.append(schedule.q_sample(x0, tt, noise))
        abars.append(float(schedule.alpha_bar(t)))
    return ts, abars, torch.stack(out)


def pick_images(labels: torch.Tensor, n: int) -> list[int]:
    """Indices of `n` images, one per class in label order (the first image of class 0, of class 1, …), cycling
    through the classes again when n exceeds their number."""
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels.tolist()):
        by_class.setdefault(y, []).append(i)
    order = [by_class[c][k] for k in range(max(map(len, by_class.values()), default=0))
             for c in sorted(by_class) if k < len(by_class[c])]
    return order[:n]


def forward_strip(images: torch.Tensor, row_labels: list[str], schedules: list[str], frames: int = 10,
                  timesteps: int = 1000, seed: int = 0) -> Image.Image:
    """uint8 images (N, C, H, W) → one block per schedule: rows are images, columns x_t at evenly spaced t with
    t and ᾱ_t in the header."""
    if len(images) == 0:
        raise LargoError("no images to noise")
    x0 = to_float(images)
    sections = []
    for kind in schedules:
        schedule = NoiseSchedule.make(kind, timesteps)
        ts, abars, xs = forward_process(x0, schedule, frames, seed)
        heads = ["x₀ (t=0)\nᾱ=1"] + [f"t={t}\nᾱ={a:.3g}" if a >= 1e-3 else f"t={t}\nᾱ={a:.2g}"
                                     for t, a in zip(ts[1:], abars[1:])]
        sec = Section(f"{kind} schedule (T = {timesteps})", heads)
        frames_u8 = to_uint8(xs)  # (F, N, C, H, W)
        for i, label in enumerate(row_labels):
            sec.add(label, [frames_u8[f, i] for f in range(len(ts))])
        sections.append(sec)
    return annotated_grid(sections)


def dataset_forward_strip(dataset: str, split: str = "test", resolution: int = 32, data_root: str = "",
                          n_images: int = 4, frames: int = 10, schedules: list[str] | tuple[str, ...] = ("linear", "cosine"),
                          timesteps: int = 1000, seed: int = 0) -> Image.Image:
    """`forward_strip` of `n_images` real images of a dataset split, one per class; every argument is checked
    before the data is loaded."""
    bad = [s for s in schedules if s not in SCHEDULES]
    if bad or not schedules:
        raise LargoError(f"unknown schedule(s) {', '.join(bad) or '(none)'}; valid: {', '.join(SCHEDULES)}")
    if n_images < 1:
        raise LargoError("--n-images must be >= 1")
    if timesteps < 2:
        raise LargoError("--timesteps must be >= 2")
    forward_timesteps(timesteps, frames)  # checks the frame count
    data = load_images(dataset, split, resolution, data_root)
    idx = pick_images(data.labels, n_images)
    if not idx:
        raise LargoError(f"{dataset} ({split}) has no images")
    labels = [data.class_names[int(data.labels[i])] if data.class_names else f"image {i}" for i in idx]
    return forward_strip(data.images[idx], labels, list(schedules), frames, timesteps, seed)
