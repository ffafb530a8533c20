"""Checkpoints that never run code: weights in safetensors, the rest through `torch.load(weights_only=True)`.

Layout of a run directory:
    config.json                  the resolved RunConfig
    checkpoints/step_00001000/   model.safetensors, ema.safetensors, state.pt, meta.json
    checkpoints/latest           the name of the newest complete checkpoint folder
A checkpoint folder is written under a temporary name and renamed when complete, and `latest` is replaced
atomically afterwards, so a crash at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import largo
from largo.config import RunConfig
from largo.errors import LargoError
from largo.io import atomic_write, atomic_write_json, atomic_write_text
from largo.paths import REPO_ROOT

FORMAT_VERSION = 1
RELEASED_DIR = REPO_ROOT / "checkpoints"


def _contiguous_state(net: nn.Module) -> dict[str, torch.Tensor]:
    # torch.compile wraps modules as `_orig_mod`; store the plain names so any net loads them.
    return {k.replace("_orig_mod.", ""): v.detach().contiguous().cpu() for k, v in net.state_dict().items()}


def save_checkpoint(run_dir: Path, step: int, net: nn.Module, ema_net: nn.Module, state: dict[str, Any],
                    cfg: RunConfig, keep: int, class_names: list[str]) -> Path:
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_contiguous_state(net), str(tmp / "model.safetensors"))
    save_file(_contiguous_state(ema_net), str(tmp / "ema.safetensors"))
    torch.save(state, tmp / "state.pt")
    meta = {"format_version": FORMAT_VERSION, "largo_version": largo.__version__, "step": step,
            "prediction": cfg.diffusion.prediction, "time": time.time(), "class_names": class_names, "config": cfg.to_dict()}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # re-saving the same step (e.g. SIGTERM right after a periodic save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(ckpt_root / "latest", name + "\n")
    _prune(ckpt_root, keep, protect=name)
    return final


def _prune(ckpt_root: Path, keep: int, protect: str) -> None:
    done = sorted(p for p in ckpt_root.iterdir() if p.is_dir() and p.name.startswith("step_"))
    for old in done[:-keep]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root.glob(".step_*.tmp-*"):  # left by a crash mid-write
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "meta.json").exists() else None


def read_meta(ckpt: Path) -> dict[str, Any]:
    try:
        meta = json.loads((ckpt / "meta.json").read_text())
    except FileNotFoundError:
        raise LargoError(f"{ckpt} is not a largo checkpoint (no meta.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LargoError(f"checkpoint metadata {ckpt / 'meta.json'} is corrupt") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise LargoError(f"checkpoint {ckpt} has format version {version!r}; this largo reads version "
                         f"{FORMAT_VERSION}")
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


def load_state(ckpt: Path) -> dict[str, Any]:
    try:
        return torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LargoError(f"training state missing: {ckpt / 'state.pt'}") from None
    except Exception as e:  # UnpicklingError for payloads, RuntimeError/EOFError for truncation
        raise LargoError(f"training state {ckpt / 'state.pt'} is corrupt or unsafe "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None


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
    cfg = RunConfig.from_dict(meta["config"])
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
