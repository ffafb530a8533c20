"""Sampling flags, declared once for every command that samples (sample, eval, viz, report) and turned into
`SamplingOptions` by the one resolver (`SamplingOptions.resolve`): a flag left out takes the run's value."""

from __future__ import annotations

import argparse

from largo.config import RERANK_CRITICS, SAMPLE_PRECISIONS, SAMPLERS, SPACINGS, WEIGHTS, RunConfig, parse_bool
from largo.errors import LargoError
from largo.sampling.options import SamplingOptions

# The flags of the SamplingOptions fields (flag = "--" + field, "_" → "-"), and `--weights`, which picks the network
# to load rather than how to sample with it.
ALL = (*SamplingOptions.names(), "weights")


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
        "guide_with": lambda: p.add_argument("--guide-with", default=None, metavar="RUN_OR_CKPT",
                                             help="autoguidance: guide with this weaker model of the same data (a run, "
                                                  "checkpoint or released name) instead of the unconditional branch; "
                                                  "--cfg is its w"),
        "weights": lambda: p.add_argument("--weights", choices=WEIGHTS, default="ema",
                                          help="EMA (default) or online weights"),
    }
    for name in only:
        declare[name]()


def flag_label(name: str) -> str:
    """The flag of a SamplingOptions field, as the user typed it."""
    return "--" + name.replace("_", "-")


def sampling_overrides(args: argparse.Namespace) -> dict:
    """The sampling flags the user gave, as `SamplingOptions.resolve` keywords (absent flags are None)."""
    given = {name: getattr(args, name, None) for name in SamplingOptions.names()}
    given["cfg_interval"] = parse_interval(given["cfg_interval"] or "")
    return given


def sampling_options(args: argparse.Namespace, cfg: RunConfig) -> SamplingOptions:
    """The run's sample config with the flags the user gave on top, checked (errors name the flags); a
    --guide-with model is loaded and checked against the run here, before anything runs or writes."""
    options = SamplingOptions.resolve(cfg, **sampling_overrides(args), label=flag_label)
    if options.guide_with:
        from largo.sampling.guide import load_guide

        load_guide(options.guide_with, cfg, "cpu")
    return options


def parse_interval(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        lo, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise LargoError(f"--cfg-interval must be LO,HI timesteps, got {text!r}") from None
    return lo, hi  # its range is checked with the other options, by SamplingOptions.check


def add_rerank_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--rerank", choices=RERANK_CRITICS, help="draw --candidates images per image and keep the one "
                                                              "the critic rates highest for its class")
    p.add_argument("--candidates", type=int, default=4, help="--rerank: candidates per image (default 4)")
    p.add_argument("--critic", metavar="PATH", help="--rerank classifier: critic classifier folder (default: the "
                                                    "dataset's second classifier, <dataset>-<res>-critic)")
    p.add_argument("--clip", metavar="ARCH:PATH", help="CLIP weights on disk, an open_clip architecture and its "
                                                       "checkpoint (e.g. ViT-B-32:/models/vit_b32.pt): CLIP scores "
                                                       "in eval, and --rerank clip")
