"""Checkpoints that never run code: weights in safetensors, the rest through `torch.load(weights_only=True)`.

Layout of a run directory:
    config.json                  the resolved RunConfig
    checkpoints/step_00001000/   model.safetensors, ema.safetensors, state.pt, meta.json
    checkpoints/latest           the name of the newest complete checkpoint folder
A checkpoint folder is written under a temporary name (every file fsynced) and renamed when complete, and
`latest` is replaced atomically afterwards, so a crash at any moment leaves the previous checkpoint usable.
Re-saving the step `latest` names swaps the files one rename at a time, so `latest` never dangles; a missing
or damaged pointer falls back to the newest complete folder. `--keep N` keeps the newest N folders.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

import largo
from largo.config import RunConfig
from largo.errors import LargoError
from largo.io import WriteError, _fsync_dir, atomic_write, atomic_write_json, atomic_write_text
from largo.paths import REPO_ROOT

FORMAT_VERSION = 1
RELEASED_DIR = REPO_ROOT / "checkpoints"


def _contiguous_state(net: nn.Module) -> dict[str, torch.Tensor]:
    # torch.compile wraps modules as `_orig_mod`; store the plain names so any net loads them.
    return {k.replace("_orig_mod.", ""): v.detach().contiguous().cpu() for k, v in net.state_dict().items()}


def save_checkpoint(run_dir: Path, step: int, net: nn.Module, ema_net: nn.Module, state: dict[str, Any],
                    cfg: RunConfig, keep: int, class_names: list[str]) -> Path:
    """Write `checkpoints/step_XXXXXXXX/` completely (temporary folder, fsync), then publish it.

    A new step's folder appears by one rename and `latest` is replaced atomically afterwards. Re-saving the step
    `latest` already names (a run that ends on a checkpoint step, SIGTERM right after a periodic save) swaps
    the files one atomic rename at a time, so `latest` never names a missing or partial folder. A failed write
    (disk full) removes the partial copy and raises a one-line `WriteError`; earlier checkpoints are untouched.
    """
    ckpt_root = run_dir / "checkpoints"
    name = f"step_{step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".{name}.tmp-{os.getpid()}"
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f, data in _checkpoint_bytes(step, net, ema_net, state, cfg, class_names).items():
            _write_synced(tmp / f, data)
        _fsync_dir(tmp)
        if final.is_dir() and latest_checkpoint(run_dir) == final:
            for f in CHECKPOINT_FILES:  # every file stays present; each is the old or the new copy
                os.replace(tmp / f, final / f)
            _fsync_dir(final)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if final.exists():  # not what a resume would load (killed before `latest` was updated)
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(ckpt_root)
        atomic_write_text(ckpt_root / "latest", name + "\n")
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        note = f"; the last complete checkpoint {previous} is intact" if previous else ""
        raise WriteError(final, e, note) from e
    _prune(ckpt_root, keep, protect=name)
    return final


CHECKPOINT_FILES = ("model.safetensors", "ema.safetensors", "state.pt", "meta.json")


def _checkpoint_bytes(step: int, net: nn.Module, ema_net: nn.Module, state: dict[str, Any], cfg: RunConfig,
                      class_names: list[str]) -> dict[str, bytes]:
    """Serialise in memory, so a failed write is a plain OSError with its errno (torch.save and safetensors
    report a full disk as cryptic RuntimeError / SafetensorError messages)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    meta = {"format_version": FORMAT_VERSION, "largo_version": largo.__version__, "step": step,
            "prediction": cfg.diffusion.prediction, "time": time.time(), "class_names": class_names,
            "config": cfg.to_dict()}
    return {"model.safetensors": save_safetensors(_contiguous_state(net)),
            "ema.safetensors": save_safetensors(_contiguous_state(ema_net)),
            "state.pt": buffer.getvalue(),
            "meta.json": json.dumps(meta, indent=2).encode()}


def _write_synced(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # named by save_checkpoint after the final folder, not this temporary one
        raise OSError(e.errno, f"{e.strerror or e} (writing {path.name})") from e


def _step_of(name: str) -> int | None:
    m = _STEP_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


_STEP_NAME = re.compile(r"step_(\d{8,})")


def _complete(folder: Path) -> bool:
    return (folder / "meta.json").is_file()  # a step folder only ever appears complete (see save_checkpoint)


def _prune(ckpt_root: Path, keep: int, protect: str) -> None:
    done = sorted((p for p in ckpt_root.iterdir() if p.is_dir() and _step_of(p.name) is not None),
                  key=lambda p: _step_of(p.name))
    for old in done[:-keep] if keep > 0 else []:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root.glob(".step_*.tmp-*"):  # left by a crash mid-write
        shutil.rmtree(stale, ignore_errors=True)


def _pointer_name(ckpt_root: Path) -> str | None:
    """The folder name in `checkpoints/latest`, or None when the pointer is missing or is not a step name."""
    try:
        name = (ckpt_root / "latest").read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if _step_of(name) is not None else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint `latest` names; if the pointer is missing or damaged, the newest complete step folder."""
    ckpt_root = Path(run_dir) / "checkpoints"
    if not ckpt_root.is_dir():
        return None
    name = _pointer_name(ckpt_root)
    if name is not None and _complete(ckpt_root / name):
        return ckpt_root / name
    try:
        candidates = [p for p in ckpt_root.iterdir() if _step_of(p.name) is not None and _complete(p)]
    except OSError:
        return None
    return max(candidates, key=lambda p: _step_of(p.name)) if candidates else None


def read_meta(ckpt: Path) -> dict[str, Any]:
    try:
        meta = json.loads((ckpt / "meta.json").read_text())
    except FileNotFoundError:
        raise LargoError(f"{ckpt} is not a largo checkpoint (no meta.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        raise LargoError(f"checkpoint metadata {ckpt / 'meta.json'} is corrupt") from None
    except OSError as e:
        raise LargoError(f"cannot read checkpoint metadata {ckpt / 'meta.json'}: {e.strerror or e}") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise LargoError(f"checkpoint {ckpt} has format version {version!r}; this largo reads version "
                         f"{FORMAT_VERSION}")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("step"), int):
        raise LargoError(f"checkpoint metadata {ckpt / 'meta.json'} is corrupt (no config or step)")
    if meta.get("class_names") is not None and not (
            isinstance(meta["class_names"], list) and all(isinstance(c, str) for c in meta["class_names"])):
        raise LargoError(f"checkpoint metadata {ckpt / 'meta.json'} is corrupt (class_names)")
    return meta


def load_weights(net: nn.Module, path: Path) -> None:
    """Load safetensors weights into `net`; a missing, corrupt or mismatched file is a one-line error."""
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise LargoError(f"checkpoint weights missing: {path}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise LargoError(f"checkpoint weights {path} are corrupt or unreadable ({str(e).splitlines()[0]})") from None
    target = getattr(net, "_orig_mod", net)
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


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its latest checkpoint), a checkpoint folder, or a released checkpoint's name."""
    p = Path(path)
    if not p.exists() and (RELEASED_DIR / str(path)).is_dir():
        p = RELEASED_DIR / str(path)
    if not p.exists():
        released = sorted(d.name for d in RELEASED_DIR.iterdir() if (d / "meta.json").exists()) \
            if RELEASED_DIR.is_dir() else []
        hint = f"; released checkpoints: {', '.join(released)}" if released else ""
        raise LargoError(f"no run, checkpoint or released checkpoint named {path}{hint}")
    if (p / "meta.json").exists():
        return p
    if (p / "checkpoints").is_dir() or (p / "config.json").exists():
        ckpt = latest_checkpoint(p)
        if ckpt is None:
            raise LargoError(f"run {p} has no complete checkpoint yet")
        return ckpt
    raise LargoError(f"{p} is neither a run directory nor a checkpoint folder")


def load_for_sampling(path: str | Path, device: torch.device | str = "cpu", weights: str = "ema"
                      ) -> tuple[nn.Module, RunConfig, list[str]]:
    """The network to sample from (EMA weights by default), its config and its class names."""
    from largo.models import build_unet

    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt)
    try:
        cfg = RunConfig.from_dict(meta["config"]).validate()
    except LargoError as e:
        raise LargoError(f"checkpoint {ckpt} has an unusable config ({e})") from None
    if cfg.model.image_channels < 1:
        raise LargoError(f"checkpoint {ckpt} records no image_channels in its config")
    net = build_unet(cfg.model, cfg.data.resolution)
    files = {"ema": "ema.safetensors", "online": "model.safetensors"}
    if weights not in files:
        raise LargoError(f"unknown weights {weights!r}; valid: ema, online")
    load_weights(net, ckpt / files[weights])
    class_names = meta.get("class_names") or [str(i) for i in range(cfg.model.num_classes)]
    return net.to(device).eval(), cfg, class_names


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    atomic_write_json(run_dir / "config.json", cfg.to_dict())


__all__ = ["save_checkpoint", "latest_checkpoint", "load_weights", "load_state", "load_for_sampling",
           "resolve_checkpoint", "read_meta", "write_config", "atomic_write", "FORMAT_VERSION"]
