"""A U-Net k times wider that computes exactly what a trained one computes (Net2WiderNet, Chen et al. 2016).

Every channel c of the narrow net becomes channels k·c … k·c + k − 1 of the wide one (interleaved, so each of the
32 GroupNorm groups holds copies of the same channels and keeps its mean and variance). A layer's outputs are
copied; its inputs from copied channels get the old weight split into k random fractions that sum to it, so the
sum is unchanged and the copies receive different gradients (identical ones would keep them copies forever).
Two places are not plain copies: the sinusoidal time (and guidance) features, whose wide frequencies contain the
narrow ones at every k-th index, and attention, whose q is scaled by 1/√k because a k-fold head dimension multiplies
q·k by k and the 1/√d scale only divides it by √k.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from largo.models.unet import UNet

# inputs that are sinusoidal features (cos | sin halves of base_channels), not channels
_SINUSOID_INPUTS = ("embed_mlp.0.weight", "guidance_embed.0.weight")


def _copy_rows(w: Tensor, dim: int, k: int) -> Tensor:
    return w.repeat_interleave(k, dim=dim)


def _split_cols(w: Tensor, dim: int, k: int, gen: torch.Generator) -> Tensor:
    """Inputs from k copies of a channel: the weight split into k random fractions summing to it."""
    wide = w.repeat_interleave(k, dim=dim)
    frac = torch.rand(wide.shape, generator=gen, dtype=torch.float64) + 0.5  # in [0.5, 1.5): no copy is starved
    shape = list(wide.shape)
    shape[dim:dim + 1] = [w.shape[dim], k]
    frac = frac.view(shape)
    frac = frac / frac.sum(dim + 1, keepdim=True)
    return (wide.to(torch.float64) * frac.view(wide.shape)).to(w.dtype)


def _sinusoid_cols(w: Tensor, k: int) -> Tensor:
    """Old feature j of half h (cos or sin) is the new feature k·j of that half; the others get zero weight."""
    half = w.shape[1] // 2
    wide = w.new_zeros(w.shape[0], 2 * k * half)
    wide[:, 0:k * half:k] = w[:, :half]
    wide[:, k * half::k] = w[:, half:]
    return wide


def widened_state(narrow: UNet, wide: UNet, seed: int = 0) -> dict[str, Tensor]:
    """`wide`'s state dict holding `narrow`'s function (wide: the same config with base_channels × k)."""
    k = wide.base_channels // narrow.base_channels
    if k < 1 or wide.base_channels != k * narrow.base_channels:
        raise ValueError(f"base_channels {wide.base_channels} is not a multiple of {narrow.base_channels}")
    gen = torch.Generator().manual_seed(seed)
    old, new = narrow.state_dict(), wide.state_dict()
    transposed = {f"{name}.weight" for name, m in wide.named_modules() if isinstance(m, nn.ConvTranspose2d)}
    out: dict[str, Tensor] = {}
    for name, target in new.items():
        if name not in old:  # e.g. a student's guidance input the teacher lacks: the wide net's own init
            out[name] = target
            continue
        w = old[name]
        out_dim, in_dim = (1, 0) if name in transposed else (0, 1)
        if w.ndim >= 1 and target.shape[out_dim] == k * w.shape[out_dim] != w.shape[out_dim]:
            w = _copy_rows(w, out_dim, k)
        if name.startswith("class_embed.") and w.shape[1] != target.shape[1]:  # an embedding's rows are outputs
            w = _copy_rows(w, 1, k)
        elif name in _SINUSOID_INPUTS and w.shape[1] != target.shape[1]:
            w = _sinusoid_cols(w, k)
        elif w.ndim >= 2 and target.shape[in_dim] == k * w.shape[in_dim] != w.shape[in_dim]:
            w = _split_cols(w, in_dim, k, gen)
        if name.endswith("qkv.weight") or name.endswith("qkv.bias"):
            w = w.clone()
            w[:w.shape[0] // 3] /= math.sqrt(k)  # q: keeps q·k / √d of the narrow heads
        if w.shape != target.shape:
            raise ValueError(f"cannot widen {name}: {tuple(old[name].shape)} → {tuple(target.shape)}")
        out[name] = w
    return out
