"""Non-leaking augmentation (Karras et al. 2022, EDM appendix; the pipeline of StyleGAN2-ADA, Karras et al. 2020).

Each transform is applied to each training image with probability p, and the parameters of what was applied
become an extra conditioning vector of the network (`AUG_DIM` numbers, zero for "nothing applied"). The network
learns the augmented distribution *given* the augmentation, so at sampling time the vector is all zeros ("none")
and the samples come from the clean distribution: the transforms do not leak into the samples, however often
they were applied in training.

Transforms (all at once, one `grid_sample` for the geometric ones, reflection padding):
geometric: x-flip, rotation by a multiple of 90°, integer-like translation (±1/8 of the side), isotropic scaling
(log2 ~ N(0, 0.2²)), rotation by any angle, anisotropic scaling (log2 ~ N(0, 0.2²)), fractional translation
(N(0, 0.125²) of the side); colour: brightness (+N(0, 0.2²)), contrast (log2 ~ N(0, 0.5²)), saturation (RGB
only, log2 ~ N(0, 1)). The ranges are StyleGAN2-ADA's. The labels:

    0 x-flip (0/1)  1,2 rot90 (sin, cos − 1)  3,4 translation (x, y, fraction of the side)  5 log2 scale
    6,7 rotation (sin, cos − 1)  8 log2 anisotropy  9 brightness  10 log2 contrast  11 log2 saturation

Data whose orientation is part of what it is (a run with `hflip` off: digits, letters) gets no x-flips and no
quarter turns: a mirrored 2 or a 6 turned into a 9 is another image, and on short runs, where the network has not
yet learnt to separate what the augmentation input says, such transforms leak into the samples (docs/FINETUNE.md
saw mirrored 2s and 5s). Rotation by a small angle, scaling, translation and colour remain.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AUG_DIM = 12
SCALE_STD, ANISO_STD, TRANSLATE_STD, INT_TRANSLATE = 0.2, 0.2, 0.125, 0.125
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0


def _gated(p: float, n: int, g: torch.Generator) -> torch.Tensor:
    """1 for the images a transform applies to (probability p), else 0; one rand(n) draw."""
    return (torch.rand(n, generator=g) < p).double()


def draw_labels(n: int, p: float, g: torch.Generator, channels: int, mirror: bool = True) -> torch.Tensor:
    """(n, AUG_DIM) float64 augmentation parameters, from `g` only (a saved generator: resume stays exact).
    Every transform draws its numbers whether or not it applies, so the stream does not depend on p's outcome.
    `mirror=False` (oriented data) zeroes the x-flips and quarter turns, drawn all the same."""
    lab = torch.zeros(n, AUG_DIM, dtype=torch.float64)
    lab[:, 0] = _gated(p, n, g) * (torch.rand(n, generator=g) < 0.5).double() * mirror
    k = torch.randint(0, 4, (n,), generator=g).double() * _gated(p, n, g) * mirror
    lab[:, 1], lab[:, 2] = torch.sin(k * math.pi / 2).round(), torch.cos(k * math.pi / 2).round() - 1
    lab[:, 3:5] = ((torch.rand(n, 2, generator=g) * 2 - 1) * INT_TRANSLATE) * _gated(p, n, g)[:, None]
    lab[:, 5] = torch.randn(n, generator=g, dtype=torch.float64) * SCALE_STD * _gated(p, n, g)
    theta = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi * _gated(p, n, g)
    lab[:, 6], lab[:, 7] = torch.sin(theta), torch.cos(theta) - 1
    lab[:, 8] = torch.randn(n, generator=g, dtype=torch.float64) * ANISO_STD * _gated(p, n, g)
    lab[:, 3:5] += torch.randn(n, 2, generator=g, dtype=torch.float64) * TRANSLATE_STD * _gated(p, n, g)[:, None]
    lab[:, 9] = torch.randn(n, generator=g, dtype=torch.float64) * BRIGHTNESS_STD * _gated(p, n, g)
    lab[:, 10] = torch.randn(n, generator=g, dtype=torch.float64) * CONTRAST_STD * _gated(p, n, g)
    saturation = torch.randn(n, generator=g, dtype=torch.float64) * SATURATION_STD * _gated(p, n, g)
    lab[:, 11] = saturation if channels == 3 else 0.0
    return lab


def _matrix(lab: torch.Tensor) -> torch.Tensor:
    """(n, 2, 3) affine maps from output to input coordinates ([-1, 1] square), for `F.affine_grid`."""
    n = len(lab)
    eye = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)

    def rot(s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        m = eye.clone()
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
        return m

    def scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
        m = eye.clone()
        m[:, 0, 0], m[:, 1, 1] = sx, sy
        return m

    flip = scale(1 - 2 * lab[:, 0], torch.ones(n, dtype=torch.float64))
    move = eye.clone()
    move[:, 0, 2], move[:, 1, 2] = 2 * lab[:, 3], 2 * lab[:, 4]
    iso = 2 ** lab[:, 5]
    aniso = 2 ** lab[:, 8]
    m = (flip @ rot(lab[:, 1], lab[:, 2] + 1) @ move @ scale(iso, iso) @ rot(lab[:, 6], lab[:, 7] + 1)
         @ scale(aniso, 1 / aniso))
    return torch.linalg.inv(m)[:, :2]


def apply_augment(x: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
    """Images x in [-1, 1] (n, C, H, W) transformed as `lab` says; all-zero labels return x unchanged."""
    out = x
    geometric = lab[:, :9].abs().sum(1) > 0
    if geometric.any():
        idx = geometric.nonzero().flatten().to(x.device)
        grid = F.affine_grid(_matrix(lab[geometric]).to(x.device, torch.float32), list(x[idx].shape),
                             align_corners=False)
        warped = F.grid_sample(x[idx].float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        out = out.clone()
        out[idx] = warped.to(x.dtype)
    lab = lab.to(x.device, torch.float32)
    b, c, s = lab[:, 9], 2 ** lab[:, 10], 2 ** lab[:, 11]
    if (lab[:, 9:] != 0).any():
        out = out + b[:, None, None, None]
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * c[:, None, None, None] + mean
        if x.shape[1] == 3:
            luma = (out * torch.tensor([0.299, 0.587, 0.114], device=x.device)[None, :, None, None]).sum(1, True)
            out = luma + (out - luma) * s[:, None, None, None]
    return out


def augment(x: torch.Tensor, p: float, g: torch.Generator, shard: tuple[int, int] = (0, 1), mirror: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(augmented x, float32 labels (n, AUG_DIM)) for this rank's slice x of a global batch: the parameters of the
    whole global batch are drawn (as the loss draws its noise), so W processes augment as one would. `mirror`:
    whether x-flips and quarter turns are among the transforms (the run's `hflip`)."""
    rank, world = shard
    lab = draw_labels(len(x) * world, p, g, x.shape[1], mirror)[rank::world]
    return apply_augment(x, lab), lab.to(x.device, torch.float32)
