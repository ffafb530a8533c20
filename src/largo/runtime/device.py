"""Devices by name, and the plain network behind DDP and torch.compile wrappers."""

from __future__ import annotations

import torch
from torch import nn

from largo.errors import LargoError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else the CPU), `cpu`, `cuda` or `cuda:N`; a device that is not here is a
    LargoError naming the flag's valid values."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise LargoError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LargoError(f"device {name!r} requested but no CUDA GPU is available (use --device cpu)")
    if device.type not in ("cpu", "cuda"):
        raise LargoError(f"unsupported device {name!r}; valid: auto, cpu, cuda, cuda:N")
    return device


def unwrap_model(net: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        inner = getattr(net, "module", None) or getattr(net, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return net
        net = inner


def model_num_classes(net: nn.Module) -> int:
    """`num_classes` of a class-conditional network, through any wrappers (the null class is this index)."""
    inner = unwrap_model(net)
    if not hasattr(inner, "num_classes"):
        raise LargoError("the network has no `num_classes` attribute (needed for the null class)")
    return int(inner.num_classes)
