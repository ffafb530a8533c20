"""What one round of `largo distill` trains: progressive distillation (Salimans & Ho 2022, algorithm 2) with the
guidance folded into the student (Meng et al. 2023, "On Distillation of Guided Diffusion Models").

The student samples with DDIM (η = 0) at N steps on the sampler's own grid (`schedule.timesteps(N, spacing)`);
the teacher walks the K·N-step grid, every K-th point of which is the student's (checked). For a student step
from grid point i, x_t = α_t x0 + σ_t ε is built from one of the teacher's own samples x0 (the training stream, no
dataset), the teacher integrates t → t'' in K substeps at guidance w (classifier-free guidance, two branches,
when the teacher is the original model; one pass with w as input when it is a previous round's student), and the
student's one DDIM step t → t'' is solved for the x0 it must predict:

    x̃ = (x_t'' − (σ_t''/σ_t) x_t) / (α_t'' − (σ_t''/σ_t) α_t)         (x̃ = x_t'' on the last step, σ = 0)

The teacher's solver: `ddim` with K = 2 is progressive distillation's own target (two DDIM steps; what every
round after the first uses, the previous student being the teacher); `dpmpp2m` is DPM-Solver++(2M) (Lu et al.
2022, data prediction, as `largo.diffusion.samplers`) on the K·N grid, restarted in each student interval: its
first substep is first order (= DDIM, no history: x_t is fresh noise), the others second order, and a substep to
σ = 0 is x0 itself. For N = 1 that is exactly the teacher's `dpmpp2m` sampler at K steps (tested). The first
round uses it so that its target is close to the ODE solution the reference sampler (DPM++ 20) approximates,
not DDIM at 2N steps, whose own discretisation error the student would otherwise learn.

The loss is max(SNR_t, 1) · ‖x̂0 − x̃‖² ("truncated SNR" weighting), x̂0 from the student's prediction at w.
w is drawn uniformly from `cfg_range` (a fixed w when lo = hi). The student starts as the teacher (its w input is
zero-initialised), so resume, EMA, checkpoints and logs are the Trainer's.

The teacher's K guided substeps cost about three times the student's forward and backward pass. With `reuse` R > 1
each step computes targets for only B/R fresh pairs (x_t, i, y, w, x̃) and trains on B pairs drawn uniformly from a
bank of the last 8·B: the teacher is frozen, so a banked target never goes stale, and each one trains the student R
times on average. The bank is part of the task's checkpointed state (resume stays exact).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from largo.config import RunConfig
from largo.data import ImageSet
from largo.diffusion.parameterization import to_x0
from largo.diffusion.schedules import NoiseSchedule
from largo.errors import LargoError
from largo.models import build_unet
from largo.models.widen import widened_state
from largo.sampling import class_grid
from largo.train.task import TrainTask

SUPPORTED_PREDICTIONS = ("eps", "x0", "v")
BANK_BATCHES = 8  # with reuse > 1: the target bank holds this many batches of pairs


TEACHER_SOLVERS = ("ddim", "dpmpp2m")


def nested_grid(schedule: NoiseSchedule, steps: int, spacing: str, factor: int = 2) -> tuple[Tensor, Tensor]:
    """(the teacher's factor·N timesteps, their ᾱ followed by 1.0): the student's N-step grid is every factor-th
    point (every other one for progressive distillation's two DDIM steps)."""
    fine, coarse = schedule.timesteps(factor * steps, spacing), schedule.timesteps(steps, spacing)
    if not torch.equal(fine[::factor], coarse):
        raise LargoError(f"the {steps}-step grid ({spacing} spacing) is not every {factor}th point of the "
                         f"{factor * steps}-step grid; distillation needs nested grids (use trailing spacing)")
    abar = torch.cat([schedule.alphas_cumprod[fine].to(torch.float64), torch.ones(1, dtype=torch.float64)])
    return fine, abar


class DistillTask(TrainTask):
    kind = "diffusion"  # a student is an ordinary diffusion checkpoint

    def __init__(self, cfg: RunConfig, device: torch.device, teacher: nn.Module, teacher_clip_x0: bool,
                 cfg_range: tuple[float, float], record: dict[str, Any], *, solver: str = "ddim",
                 substeps: int = 2, reuse: int = 1):
        """`cfg`: the student's run config (its sample section: ddim at the student's steps); `teacher`: the frozen
        network (EMA weights) the student starts from; `record`: what the checkpoints' meta says of this round;
        `solver`, `substeps`: how the teacher integrates one student interval (ddim, 2: progressive distillation's
        two DDIM steps); `reuse`: how many times each teacher target trains the student on average."""
        if cfg.diffusion.prediction not in SUPPORTED_PREDICTIONS:
            raise LargoError(f"distillation needs an eps, x0 or v network; the teacher predicts "
                             f"{cfg.diffusion.prediction}")
        if solver not in TEACHER_SOLVERS or substeps < 1:
            raise LargoError(f"the teacher's solver must be one of {', '.join(TEACHER_SOLVERS)} with >= 1 substeps, "
                             f"got {solver} with {substeps}")
        if reuse < 1:
            raise LargoError(f"reuse must be >= 1, got {reuse}")
        self.solver, self.substeps, self.reuse = solver, substeps, reuse
        self.bank: dict[str, Tensor] = {}  # reuse > 1: banked pairs, a ring
        self.banked = 0  # pairs ever written to it: the ring's next slot and how much of it is filled follow
        self.cfg, self.device, self.record = cfg, device, record
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        self.teacher_w_input = getattr(teacher, "guidance_embed", None) is not None
        self.clip = teacher_clip_x0
        self.lo, self.hi = cfg_range
        self.steps = cfg.sample.sample_steps
        self.timesteps, self.abar = nested_grid(NoiseSchedule.from_config(cfg.diffusion), self.steps,
                                                cfg.sample.spacing, substeps)
        self.logs: dict[str, float] = {}

    def prepare(self, data: ImageSet) -> tuple[ImageSet, Tensor | None]:
        return data, None  # the teacher's samples, in the space the network sees; the model config is the teacher's

    def build_net(self) -> nn.Module:
        net = build_unet(self.cfg.model, self.cfg.net_size)
        state = self.teacher.state_dict()
        if net.base_channels != getattr(self.teacher, "base_channels", net.base_channels):  # a wider student
            state = widened_state(self.teacher, net, seed=self.cfg.train.seed)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("guidance_embed.") for k in missing):
            raise LargoError("the teacher's network does not match the student's architecture")
        return net

    # -- the teacher's walk over one student interval -------------------------------------------------------
    def _teacher_x0(self, x: Tensor, t: Tensor, y: Tensor, w: Tensor, abar: Tensor) -> Tensor:
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        if self.teacher_w_input:
            pred = self.teacher(x, t, y, guidance=w)
        else:  # classifier-free guidance: both branches in one pass of 2B, mixed in the net's own target
            null = torch.full_like(y, self.cfg.model.num_classes)
            cond, uncond = self.teacher(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
            pred = uncond + w.view(-1, 1, 1, 1) * (cond - uncond)
        x0 = to_x0(pred.to(torch.float64), self.cfg.diffusion.prediction, x, alpha, sigma)
        return x0.clamp(-1, 1) if self.clip else x0

    def _ddim(self, x: Tensor, x0: Tensor, a: Tensor, a_next: Tensor) -> Tensor:
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps

    @staticmethod
    def _lambda(a: Tensor) -> Tensor:
        return 0.5 * (a.log() - (-a).log1p())  # log(α/σ): -inf at ᾱ = 0, +inf at ᾱ = 1

    def _dpmpp2m(self, x: Tensor, x0: Tensor, x0_prev: Tensor, a_prev: Tensor, a: Tensor, a_next: Tensor) -> Tensor:
        """DPM-Solver++(2M) from ᾱ = a to a_next with the previous substep's x0 (at a_prev); x0 when a_next = 1."""
        lam_prev, lam, lam_next = self._lambda(a_prev), self._lambda(a), self._lambda(a_next)
        h = lam_next - lam
        r = (lam - lam_prev) / h
        d = x0 + (0.5 / r) * (x0 - x0_prev)
        x_next = ((1 - a_next) / (1 - a)).sqrt() * x - a_next.sqrt() * torch.expm1(-h) * d
        return torch.where(a_next >= 1, x0, x_next)

    @torch.no_grad()
    def target(self, x_t: Tensor, i: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """x̃: the x0 a student's one DDIM step from grid point i must predict to land where the teacher's K substeps
        do. x_t float64 (B, C, H, W); i (B,) student grid indices; y labels; w (B,) guidance scales."""
        shape, k = (-1,) + (1,) * (x_t.ndim - 1), self.substeps
        abar, ts = self.abar.to(x_t.device), self.timesteps.to(x_t.device)
        net_dtype = next(self.teacher.parameters()).dtype
        x, prev = x_t, None  # prev: the previous substep's (x0, ᾱ), for the second-order solver
        for j in range(k):
            a, a_next = abar[k * i + j].view(shape), abar[k * i + j + 1].view(shape)
            x0 = self._teacher_x0(x.to(net_dtype), ts[k * i + j].float(), y, w, a)
            if self.solver == "ddim" or prev is None:
                x_new = self._ddim(x, x0, a, a_next)
            else:
                x_new = self._dpmpp2m(x, x0, prev[0], prev[1], a, a_next)
            x, prev = x_new, (x0, a)
        a0, a2 = abar[k * i].view(shape), abar[k * i + k].view(shape)
        ratio = (1 - a2).sqrt() / (1 - a0).sqrt()
        return (x - ratio * x_t) / (a2.sqrt() - ratio * a0.sqrt())

    def _fresh(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """New training pairs from images x: a student grid index, w, x_t (the network's dtype) and the target x̃."""
        b, device = x.shape[0], x.device
        i = torch.randint(0, self.steps, (b,), device=device)
        w = self.lo + (self.hi - self.lo) * torch.rand(b, device=device)
        eps = torch.randn_like(x)
        a = self.abar.to(device)[self.substeps * i].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x.to(torch.float64) + (1 - a).sqrt() * eps.to(torch.float64)
        return {"x_t": x_t.to(x.dtype), "i": i, "y": y, "w": w, "x_tilde": self.target(x_t, i, y, w).float()}

    def _replay(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """B pairs drawn from the bank after adding B/R fresh ones (a whole batch on the first step)."""
        b = x.shape[0]
        n = b if not self.bank else max(1, b // self.reuse)
        fresh = self._fresh(x[:n], y[:n])
        if not self.bank:
            cap = BANK_BATCHES * b
            self.bank = {k: v.new_zeros((cap,) + v.shape[1:]) for k, v in fresh.items()}
        cap = len(self.bank["i"])
        slots = (self.banked + torch.arange(n, device=x.device)) % cap
        for k, v in fresh.items():
            self.bank[k][slots] = v
        self.banked += n
        pick = torch.randint(0, min(cap, self.banked), (b,), device=x.device)
        return {k: v[pick] for k, v in self.bank.items()}

    def loss(self, model_fn: nn.Module, net: nn.Module, x: Tensor, y: Tensor, step: int,
             shard: tuple[int, int]) -> Tensor:
        pairs = self._fresh(x, y) if self.reuse == 1 else self._replay(x, y)
        i, x_in = pairs["i"], pairs["x_t"]
        a = self.abar.to(x.device)[self.substeps * i].view(-1, 1, 1, 1)
        t = self.timesteps.to(x.device)[self.substeps * i].float()
        pred = model_fn(x_in, t, pairs["y"], guidance=pairs["w"]).float()
        x0_hat = to_x0(pred, self.cfg.diffusion.prediction, x_in.float(), a.sqrt().float(), (1 - a).sqrt().float())
        weight = (a / (1 - a)).clamp(min=1.0).float().view(-1)
        per_image = (x0_hat - pairs["x_tilde"]).square().flatten(1).mean(1)
        self.logs = {"student_steps": float(self.steps)}
        return (weight * per_image).mean()

    def grid(self, ema_net: nn.Module, class_names: list[str]) -> Image.Image:
        s = self.cfg.sample
        return class_grid(ema_net, self.cfg, class_names, per_class=s.grid_per_class, seed=0, device=self.device)

    def architecture(self, cfg: RunConfig) -> Any:
        return cfg.model

    def meta(self) -> dict:
        return {"prediction": self.cfg.diffusion.prediction, "latent": None, "distill": self._record()}

    def _record(self) -> dict:
        return {"teacher_solver": self.solver, "teacher_substeps": self.substeps, "reuse": self.reuse, **self.record}

    def state_dict(self) -> dict:
        if not self.bank:
            return {}
        return {"bank": {k: v.detach().cpu().clone() for k, v in self.bank.items()}, "banked": self.banked}

    def load_state_dict(self, state: dict | None) -> None:
        if state and "bank" in state:
            self.bank = {k: v.to(self.device) for k, v in state["bank"].items()}
            self.banked = int(state["banked"])

    def check_resume(self, meta: dict) -> None:
        # rounds saved before these keys existed: the plain first teacher, every pair fresh
        saved = {"teacher_solver": "ddim", "teacher_substeps": 2, "reuse": 1, **(meta.get("distill") or {})}
        mine = self._record()
        keys = ("steps", "teacher", "teacher_solver", "teacher_substeps", "reuse")
        if any(saved.get(k) != mine.get(k) for k in keys):
            raise LargoError("cannot resume: the checkpoint is another distillation round (teacher, its solver, "
                             "steps or reuse differ)")
