"""Sampling flags shared by `largo sample` and `largo eval`: declared once, resolved once against the run's
sample config (a flag left out takes the run's value)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from largo.config import SAMPLE_PRECISIONS, SAMPLERS, SPACINGS, RunConfig, _parse_bool
from largo.errors import LargoError


def add_sampling_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--sampler", choices=SAMPLERS, help="default: the run's sample config")
    p.add_argument("--steps", type=int, help="sampling steps (Heun: NFE = 2·steps − 1)")
    p.add_argument("--eta", type=float, help="DDIM η (0 = deterministic)")
    p.add_argument("--spacing", choices=SPACINGS, help="timestep spacing")
    p.add_argument("--cfg", type=float, help="guidance scale w (1 = no guidance, 0 = unconditional)")
    p.add_argument("--cfg-interval", default="", metavar="LO,HI", help="guide only for timesteps in [LO, HI]")
    p.add_argument("--clip-x0", type=_parse_bool, default=None, metavar="BOOL",
                   help="clip x0 estimates to [-1, 1] (default: the run's sample config)")
    p.add_argument("--precision", choices=SAMPLE_PRECISIONS, default=None,
                   help="network precision while sampling (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--weights", choices=("ema", "online"), default="ema", help="EMA (default) or online weights")


@dataclass
class Sampling:
    sampler: str
    steps: int
    eta: float
    spacing: str
    cfg_scale: float
    cfg_interval: tuple[int, int] | None
    clip_x0: bool
    precision: str

    def kwargs(self) -> dict:
        """Keyword arguments for `largo.generate.generate_images`."""
        return asdict(self)


def resolve_sampling(args: argparse.Namespace, cfg: RunConfig) -> Sampling:
    s = cfg.sample
    pick = lambda flag, default: default if flag is None else flag  # noqa: E731
    choice = Sampling(sampler=args.sampler or s.sampler, steps=pick(args.steps, s.sample_steps),
                      eta=pick(args.eta, s.eta), spacing=args.spacing or s.spacing, cfg_scale=pick(args.cfg, s.cfg),
                      cfg_interval=parse_interval(args.cfg_interval), clip_x0=pick(args.clip_x0, s.clip_x0),
                      precision=args.precision or s.sample_precision)
    if not 1 <= choice.steps <= cfg.diffusion.timesteps:
        raise LargoError(f"--steps must be in [1, {cfg.diffusion.timesteps}], got {choice.steps}")
    if choice.eta < 0:
        raise LargoError(f"--eta must be >= 0, got {choice.eta:g}")
    if choice.cfg_scale < 0:
        raise LargoError(f"--cfg must be >= 0, got {choice.cfg_scale:g}")
    if cfg.model.num_classes == 0 and choice.cfg_scale != 1:
        raise LargoError("this checkpoint is unconditional: classifier-free guidance needs --cfg 1")
    return choice


def parse_interval(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        lo, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise LargoError(f"--cfg-interval must be LO,HI timesteps, got {text!r}") from None
    if not 0 <= lo <= hi:
        raise LargoError("--cfg-interval needs 0 <= LO <= HI")
    return lo, hi
