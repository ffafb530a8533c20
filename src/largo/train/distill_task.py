"""What one round of `largo distill` trains: progressive distillation (Salimans & Ho 2022, algorithm 2) with the
guidance folded into the student (Meng et al. 2023, "On Distillation of Guided Diffusion Models").

The student samples with DDIM (η = 0) at N steps on the sampler's own grid (`schedule.timesteps(N, spacing)`);
the teacher walks the 2N-step grid, whose even points are the student's (checked). For a student step from grid
point i, x_t = α_t x0 + σ_t ε is built from one of the teacher's own samples x0 (the training stream, no
dataset), the teacher takes two DDIM steps t → t' → t'' at guidance w (classifier-free guidance, two branches,
when the teacher is the original model; one pass with w as input when it is a previous round's student), and the
student's one DDIM step t → t'' is solved for the x0 it must predict:

    x̃ = (x_t'' − (σ_t''/σ_t) x_t) / (α_t'' − (σ_t''/σ_t) α_t)         (x̃ = x_t'' on the last step, σ = 0)

The loss is max(SNR_t, 1) · ‖x̂0 − x̃‖² ("truncated SNR" weighting), x̂0 from the student's prediction at w.
w is drawn uniformly from `cfg_range` (a fixed w when lo = hi). The student starts as the teacher (its w input is
zero-initialised), so resume, EMA, checkpoints and logs are the Trainer's.
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
from largo.sampling import class_grid
from largo.train.task import TrainTask

SUPPORTED_PREDICTIONS = ("eps", "x0", "v")


def nested_grid(schedule: NoiseSchedule, steps: int, spacing: str) -> tuple[Tensor, Tensor]:
    """(the teacher's 2N timesteps, their ᾱ followed by 1.0): the student's N-step grid is every other point."""
    fine, coarse = schedule.timesteps(2 * steps, spacing), schedule.timesteps(steps, spacing)
    if not torch.equal(fine[::2], coarse):
        raise LargoError(f"the {steps}-step grid ({spacing} spacing) is not every other point of the {2 * steps}-"
                         f"step grid; progressive distillation needs nested grids (use trailing spacing)")
    abar = torch.cat([schedule.alphas_cumprod[fine].to(torch.float64), torch.ones(1, dtype=torch.float64)])
    return fine, abar


class DistillTask(TrainTask):
    kind = "diffusion"  # a student is an ordinary diffusion checkpoint

    def __init__(self, cfg: RunConfig, device: torch.device, teacher: nn.Module, teacher_clip_x0: bool,
                 cfg_range: tuple[float, float], record: dict[str, Any]):
        """`cfg`: the student's run config (its sample section: ddim at the student's steps); `teacher`: the frozen
        network (EMA weights) the student starts from; `record`: what the checkpoints' meta says of this round."""
        if cfg.diffusion.prediction not in SUPPORTED_PREDICTIONS:
            raise LargoError(f"distillation needs an eps, x0 or v network; the teacher predicts "
                             f"{cfg.diffusion.prediction}")
        self.cfg, self.device, self.record = cfg, device, record
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        self.teacher_w_input = getattr(teacher, "guidance_embed", None) is not None
        self.clip = teacher_clip_x0
        self.lo, self.hi = cfg_range
        self.steps = cfg.sample.sample_steps
        self.timesteps, self.abar = nested_grid(NoiseSchedule.from_config(cfg.diffusion), self.steps,
                                                cfg.sample.spacing)
        self.logs: dict[str, float] = {}

    def prepare(self, data: ImageSet) -> tuple[ImageSet, Tensor | None]:
        return data, None  # the teacher's samples, in the space the network sees; the model config is the teacher's

    def build_net(self) -> nn.Module:
        net = build_unet(self.cfg.model, self.cfg.net_size)
        missing, unexpected = net.load_state_dict(self.teacher.state_dict(), strict=False)
        if unexpected or any(not k.startswith("guidance_embed.") for k in missing):
            raise LargoError("the teacher's network does not match the student's architecture")
        return net

    # -- the teacher's two DDIM steps ---------------------------------------------------------------------
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

    @torch.no_grad()
    def target(self, x_t: Tensor, i: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """x̃: the x0 a student's one DDIM step from grid point i must predict to land where the teacher's two do.
        x_t float64 (B, C, H, W); i (B,) student grid indices; y labels; w (B,) guidance scales."""
        shape = (-1,) + (1,) * (x_t.ndim - 1)
        a0, a1, a2 = (self.abar.to(x_t.device)[2 * i + k].view(shape) for k in range(3))
        ts = self.timesteps.to(x_t.device)
        net_dtype = next(self.teacher.parameters()).dtype

        def x0_at(x: Tensor, k: int, a: Tensor) -> Tensor:
            return self._teacher_x0(x.to(net_dtype), ts[2 * i + k].float(), y, w, a)

        x_mid = self._ddim(x_t, x0_at(x_t, 0, a0), a0, a1)
        x_next = self._ddim(x_mid, x0_at(x_mid, 1, a1), a1, a2)
        ratio = (1 - a2).sqrt() / (1 - a0).sqrt()
        return (x_next - ratio * x_t) / (a2.sqrt() - ratio * a0.sqrt())

    def loss(self, model_fn: nn.Module, net: nn.Module, x: Tensor, y: Tensor, step: int,
             shard: tuple[int, int]) -> Tensor:
        b, device = x.shape[0], x.device
        i = torch.randint(0, self.steps, (b,), device=device)
        w = self.lo + (self.hi - self.lo) * torch.rand(b, device=device)
        eps = torch.randn_like(x)
        a = self.abar.to(device)[2 * i].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x.to(torch.float64) + (1 - a).sqrt() * eps.to(torch.float64)
        x_tilde = self.target(x_t, i, y, w)
        t = self.timesteps.to(device)[2 * i].float()
        x_in = x_t.to(x.dtype)
        pred = model_fn(x_in, t, y, guidance=w).float()
        x0_hat = to_x0(pred, self.cfg.diffusion.prediction, x_in.float(), a.sqrt().float(), (1 - a).sqrt().float())
        weight = (a / (1 - a)).clamp(min=1.0).float().view(-1)
        per_image = (x0_hat - x_tilde.float()).square().flatten(1).mean(1)
        self.logs = {"student_steps": float(self.steps)}
        return (weight * per_image).mean()

    def grid(self, ema_net: nn.Module, class_names: list[str]) -> Image.Image:
        s = self.cfg.sample
        return class_grid(ema_net, self.cfg, class_names, per_class=s.grid_per_class, seed=0, device=self.device)

    def architecture(self, cfg: RunConfig) -> Any:
        return cfg.model

    def meta(self) -> dict:
        return {"prediction": self.cfg.diffusion.prediction, "latent": None, "distill": self.record}

    def check_resume(self, meta: dict) -> None:
        saved = meta.get("distill") or {}
        if saved.get("steps") != self.record.get("steps") or saved.get("teacher") != self.record.get("teacher"):
            raise LargoError("cannot resume: the checkpoint is another distillation round (teacher or steps differ)")
