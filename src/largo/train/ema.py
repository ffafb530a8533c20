"""Exponential moving average of the parameters (the weights we sample from)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps an fp32 shadow network. With warm-up the decay at update n is min(decay, (1+n)/(10+n)), so the
    first samples of a run come from recent weights instead of the random initialisation."""

    def __init__(self, net: nn.Module, decay: float, warmup: bool = True, power: float = 0.0):
        """power > 0: the warm-up decay is 1 - (1 + n)^-power (diffusers' `EMAModel` power warm-up: 0.75 averages
        over about twice as many recent steps early on as (1 + n)/(10 + n) does)."""
        self.decay = decay
        self.warmup = warmup
        self.power = power
        self.updates = 0
        self.net = copy.deepcopy(net).float().eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        if self.power > 0:
            return min(self.decay, 1.0 - (1 + self.updates) ** -self.power)
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        d = self.current_decay()
        ema_params = list(self.net.parameters())
        params = [p.detach().float() for p in net.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)  # ema += (1 - d) * (p - ema)
        for b_ema, b in zip(self.net.buffers(), net.buffers()):
            b_ema.copy_(b)
        self.updates += 1
