"""The valid range of every numeric flag that is not a config field (config fields are checked by the config's
own `validate`, so each range has one home). `checked_types` wraps each such flag's argparse type once the
parser is built, so a bad value ends at parsing, with argparse's one line naming the flag, before anything runs
or writes."""

from __future__ import annotations

import argparse
import math

# dest → (low, high), inclusive; (command, dest) for a command whose flag means something else.
RANGES: dict[object, tuple[float, float]] = {
    "n": (1, 1_000_000), "batch_size": (1, 65_536), "seed": (0, 2**31 - 1), "steps": (1, 100_000),
    "resolution": (8, 2048), "eta": (0, 1), "cfg": (0, 100), "candidates": (1, 64), "ref_n": (0, 10_000_000),
    "kid_subsets": (1, 10_000), "kid_subset_size": (2, 1_000_000), "prc_k": (1, 1000), "prc_max": (2, 1_000_000),
    "every": (1, 100_000), "frames": (1, 10_000), "timesteps": (2, 100_000), "n_images": (1, 1000), "bins": (2, 256),
    "smoothing": (0, 0.999), "minutes": (0.01, 100_000), "per_class": (1, 10_000), "check_per_class": (1, 10_000),
    "epochs": (1, 10_000), "lr": (1e-8, 10), "limit": (0, 100_000_000), "test_limit": (0, 100_000_000),
    "port": (1, 65_535), "strength": (0, 1), ("edit interpolate", "frames"): (2, 64), "ema_length": (0.001, 0.28),
    ("eval", "n"): (2, 1_000_000), ("autoencoder eval", "n"): (0, 10_000_000), "to": (1, 4096),
    "iters_per_round": (1, 100_000_000), "minutes_per_round": (0.01, 100_000), "pool": (1, 10_000_000),
    "pool_steps": (0, 100_000), "teacher_substeps": (1, 1000), "cd_grid": (1, 1000),
    "cd_target_decay": (0, 0.9999), "width": (1, 4), "reuse": (1, 32),
}


def checked(kind: type, lo: float, hi: float):
    """An argparse type: `kind` (int or float), finite, in [lo, hi]."""
    what = "an integer" if kind is int else "a number"
    lo_s, hi_s = (f"{int(lo)}", f"{int(hi)}") if kind is int else (f"{lo:g}", f"{hi:g}")

    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what} in [{lo_s}, {hi_s}], got {text!r}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"must be {what} in [{lo_s}, {hi_s}], got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def checked_types(parser: argparse.ArgumentParser, command: str = "") -> None:
    """Give every int/float flag of `parser` and its subcommands (config-field flags excepted) its checked type."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                checked_types(sub, f"{command} {name}".strip())
        elif action.type in (int, float) and not getattr(action, "config_field", False):
            lo, hi = RANGES.get((command, action.dest)) or RANGES.get(action.dest) or (-math.inf, math.inf)
            if math.isinf(lo) and math.isinf(hi):
                raise KeyError(f"flag {action.option_strings} of `largo {command}` has no range in cli/ranges.py")
            action.type = checked(action.type, lo, hi)
