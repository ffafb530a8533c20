"""Consistency distillation (Song et al. 2023, "Consistency Models", algorithm 2) of a guided teacher, with the
guidance folded into the student as in `DistillTask` (the same pool, the same w input, the same one-pass guided
`Denoiser` at sampling).

The grid: the teacher's `grid_steps`-point trailing grid (`schedule.timesteps(G, spacing)`) followed by the clean
image. Each student step count S sampled with DDIM (η = 0) must be every (G/S)-th point of it (checked), so `largo
sample --steps S` evaluates the student at points it was trained on. For grid point n, x_n = α_n x0 + σ_n ε is
built from one of the teacher's own samples x0, the teacher takes **one** guided DDIM step (DPM-Solver-1, x0
clipped as the teacher samples) to the next point n+1, and the student's x0 estimate at (x_n, t_n) is pulled
towards the target network's estimate at (x̂_{n+1}, t_{n+1}):

    loss = ‖f_θ(x_n, t_n, w) − f_θ⁻(x̂_{n+1}, t_{n+1}, w)‖²,   f = the net's x0 (from its v, eps or x0 output)

with f_θ⁻(x̂, clean) = x̂ on the last interval (the boundary condition: the teacher's own last step). θ⁻ is an
EMA of θ with decay `target_decay` (Song et al. use 0.95 for CD), kept in the task's state so resume is exact.
The student starts as the teacher (its w input zero), and θ⁻ as the student. One network serves every S.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from largo.config import RunConfig
from largo.diffusion.parameterization import to_x0
from largo.errors import LargoError
from largo.train.distill_task import DistillTask


class ConsistencyTask(DistillTask):
    def __init__(self, cfg: RunConfig, device: torch.device, teacher: nn.Module, teacher_clip_x0: bool,
                 cfg_range: tuple[float, float], record: dict[str, Any], *, grid_steps: int = 32,
                 target_decay: float = 0.95, step_counts: tuple[int, ...] = ()):
        """`cfg`: the student's run config (ddim at its fewest steps S); `grid_steps`: G, the teacher's grid
        (every step count in `step_counts` and S must divide it); `record`: the checkpoints' meta."""
        steps = cfg.sample.sample_steps
        for s in {steps, *step_counts}:
            if s < 1 or grid_steps % s:
                raise LargoError(f"the consistency grid of {grid_steps} points must be a multiple of the student's "
                                 f"{s} steps")
        if not 0 <= target_decay < 1:
            raise LargoError(f"the target network's EMA decay must be in [0, 1), got {target_decay:g}")
        super().__init__(cfg, device, teacher, teacher_clip_x0, cfg_range, record, solver="ddim",
                         substeps=grid_steps // steps)
        self.grid_steps, self.target_decay = grid_steps, target_decay
        self.target_net: nn.Module | None = None

    def setup(self, net: nn.Module, fused: bool) -> None:
        self.target_net = copy.deepcopy(net).eval().requires_grad_(False)
        self.net_params, self.net_buffers = list(net.parameters()), list(net.buffers())  # what θ⁻ follows

    @torch.no_grad()
    def after_step(self, step: int, dist: Any) -> None:
        for p_target, p in zip(self.target_net.parameters(), self.net_params, strict=True):
            p_target.lerp_(p.detach(), 1.0 - self.target_decay)
        for b_target, b in zip(self.target_net.buffers(), self.net_buffers, strict=True):
            b_target.copy_(b)

    def state_dict(self) -> dict:
        return {"target": {k: v.detach().cpu().clone() for k, v in self.target_net.state_dict().items()}}

    def load_state_dict(self, state: dict | None) -> None:
        if state and "target" in state:
            self.target_net.load_state_dict(state["target"])

    def _x0(self, fn: nn.Module, x: Tensor, t: Tensor, y: Tensor, w: Tensor, a: Tensor) -> Tensor:
        pred = fn(x, t, y, guidance=w).float()
        return to_x0(pred, self.cfg.diffusion.prediction, x.float(), a.sqrt().float(), (1 - a).sqrt().float())

    def loss(self, model_fn: nn.Module, net: nn.Module, x: Tensor, y: Tensor, step: int,
             shard: tuple[int, int]) -> Tensor:
        b, device, g = x.shape[0], x.device, self.grid_steps
        n = torch.randint(0, g, (b,), device=device)
        w = self.lo + (self.hi - self.lo) * torch.rand(b, device=device)
        eps = torch.randn_like(x)
        abar, ts = self.abar.to(device), self.timesteps.to(device)
        shape = (-1, 1, 1, 1)
        a, a_next = abar[n].view(shape), abar[n + 1].view(shape)
        x_n = a.sqrt() * x.to(torch.float64) + (1 - a).sqrt() * eps.to(torch.float64)
        with torch.no_grad():
            net_dtype = next(self.teacher.parameters()).dtype
            x0_teacher = self._teacher_x0(x_n.to(net_dtype), ts[n].float(), y, w, a)
            x_next = self._ddim(x_n, x0_teacher, a, a_next).to(x.dtype)
            inner = n + 1 < g
            t_next = ts[(n + 1).clamp(max=g - 1)].float()
            target = self._x0(self.target_net, x_next, t_next, y, w, a_next.clamp(max=abar[g - 1]))
            target = torch.where(inner.view(shape), target, x_next.float())
        x_in = x_n.to(x.dtype)
        x0_hat = self._x0(model_fn, x_in, ts[n].float(), y, w, a)
        self.logs = {"grid_steps": float(g)}
        return (x0_hat - target).square().flatten(1).mean(1).mean()
