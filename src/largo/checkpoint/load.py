"""Reading checkpoint files safely: safetensors weights, and training state through `weights_only=True`."""

from __future__ import annotations

import pickle
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from largo.errors import LargoError
from largo.runtime import unwrap_model


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a missing or corrupt file is a one-line error."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise LargoError(f"checkpoint weights missing: {path}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise LargoError(f"checkpoint weights {path} are corrupt or unreadable ({str(e).splitlines()[0]})") from None


def load_weights(net: nn.Module, path: Path) -> None:
    """Load safetensors weights into `net`; a missing, corrupt or mismatched file is a one-line error."""
    state = read_weights(path)
    target = unwrap_model(net)
    expected = target.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}" if unexpected
                  else f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}")
        raise LargoError(f"checkpoint weights {path} do not fit this model's config: {detail}")
    target.load_state_dict(state)


STATE_KEYS = ("step", "optimizer", "ema_updates", "stream", "rng")


def load_state(ckpt: Path) -> dict[str, Any]:
    """Training state through `torch.load(weights_only=True)`: tensors and plain containers only, so a crafted
    pickle (a `__reduce__` that runs code) is refused before anything executes."""
    path = ckpt / "state.pt"
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LargoError(f"training state missing: {path}") from None
    except pickle.UnpicklingError as e:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n\n|$)", str(e), re.S)
        detail = " ".join(found.group(1).split())[:100] if found else str(e).splitlines()[0][:100]
        raise LargoError(f"training state {path} refused: it holds pickled objects other than tensors and plain "
                         f"containers ({detail}); nothing in it was run") from None
    except Exception as e:  # RuntimeError/EOFError/… for truncated or garbage files
        raise LargoError(f"training state {path} is corrupt or unsafe "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None
    missing = [k for k in STATE_KEYS if k not in state] if isinstance(state, dict) else list(STATE_KEYS)
    if missing:
        raise LargoError(f"training state {path} is corrupt (missing {', '.join(missing)})")
    _check_optimizer_fits_weights(state, ckpt)
    return state


def _check_optimizer_fits_weights(state: dict[str, Any], ckpt: Path) -> None:
    """AdamW moments must have the shapes of the weights saved beside them: a state.pt from another run with
    the same number of tensors would otherwise load and fail at the first optimizer step."""
    opt = state.get("optimizer")
    per_param = opt.get("state") if isinstance(opt, dict) else None
    if not isinstance(per_param, dict):
        return  # the trainer reports a malformed optimizer state when it loads it
    try:
        with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
            weights = Counter(tuple(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:
        return  # unreadable weights are reported by load_weights
    moments = Counter()
    for entry in per_param.values():
        if isinstance(entry, dict) and torch.is_tensor(entry.get("exp_avg")):
            moments[tuple(entry["exp_avg"].shape)] += 1
    extra = moments - weights
    if extra:
        shape = next(iter(extra))
        raise LargoError(f"training state {ckpt / 'state.pt'} does not belong to the weights beside it: its "
                         f"optimizer holds a tensor of shape {shape}, which no weight in model.safetensors has")
