"""Sampling flags, declared once for every command that samples (sample, eval, viz, report) and turned into
`SamplingOptions` by the one resolver (`SamplingOptions.resolve`): a flag left out takes the run's value."""

from __future__ import annotations

import argparse

from largo.config import SAMPLE_PRECISIONS, SAMPLERS, SPACINGS, RunConfig, parse_bool
from largo.errors import LargoError

# SampleConfig field → the flag that sets it, so errors name what the user typed.
FLAG_NAMES = {"sampler": "--sampler", "sample_steps": "--steps", "eta": "--eta", "spacing": "--spacing",
              "cfg": "--cfg", "cfg_interval": "--cfg-interval", "clip_x0": "--clip-x0",
              "sample_precision": "--precision"}
ALL = ("sampler", "steps", "eta", "spacing", "cfg", "cfg_interval", "clip_x0", "precision", "weights")


def add_sampling_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup, only: tuple[str, ...] = ALL) -> None:
    """Declare the sampling flags named in `only` (default: all of them)."""
    declare = {
        "sampler": lambda: p.add_argument("--sampler", choices=SAMPLERS, help="default: the run's sample config"),
        "steps": lambda: p.add_argument("--steps", type=int, help="sampling steps (Heun: NFE = 2·steps − 1)"),
        "eta": lambda: p.add_argument("--eta", type=float, help="DDIM η (0 = deterministic)"),
        "spacing": lambda: p.add_argument("--spacing", choices=SPACINGS, help="timestep spacing"),
        "cfg": lambda: p.add_argument("--cfg", type=float,
                                      help="guidance scale w (1 = no guidance, 0 = unconditional)"),
        "cfg_interval": lambda: p.add_argument("--cfg-interval", default="", metavar="LO,HI",
                                               help="guide only for timesteps in [LO, HI]"),
        "clip_x0": lambda: p.add_argument("--clip-x0", type=parse_bool, default=None, metavar="BOOL",
                                          help="clip x0 estimates to [-1, 1] (default: the run's sample config)"),
        "precision": lambda: p.add_argument("--precision", choices=SAMPLE_PRECISIONS, default=None,
                                            help="network precision while sampling (auto: bf16 on CUDA, fp32 on CPU)"),
        "weights": lambda: p.add_argument("--weights", choices=("ema", "online"), default="ema",
                                          help="EMA (default) or online weights"),
    }
    for name in only:
        declare[name]()


def flag_label(field: str) -> str:
    return FLAG_NAMES.get(field, field)


def sampling_overrides(args: argparse.Namespace) -> dict:
    """The sampling flags the user gave, as `SamplingOptions.resolve` keywords (absent flags are None)."""
    return {"sampler": getattr(args, "sampler", None), "steps": getattr(args, "steps", None),
            "eta": getattr(args, "eta", None), "spacing": getattr(args, "spacing", None),
            "cfg_scale": getattr(args, "cfg", None), "cfg_interval": parse_interval(getattr(args, "cfg_interval", "")),
            "clip_x0": getattr(args, "clip_x0", None), "precision": getattr(args, "precision", None)}


def sampling_options(args: argparse.Namespace, cfg: RunConfig):
    """The run's sample config with the flags the user gave on top, checked (errors name the flags)."""
    from largo.sampling import SamplingOptions

    return SamplingOptions.resolve(cfg, **sampling_overrides(args), label=flag_label)


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


def add_rerank_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--rerank", choices=("classifier", "clip"), help="draw --candidates images per image and keep the one "
                                                              "the critic rates highest for its class")
    p.add_argument("--candidates", type=int, default=4, help="--rerank: candidates per image (default 4)")
    p.add_argument("--critic", metavar="PATH", help="--rerank classifier: critic classifier folder (default: the "
                                                    "dataset's second classifier, <dataset>-<res>-critic)")
    p.add_argument("--clip", metavar="ARCH:PATH", help="CLIP weights on disk, an open_clip architecture and its "
                                                       "checkpoint (e.g. ViT-B-32:/models/vit_b32.pt): CLIP scores "
                                                       "in eval, and --rerank clip")
