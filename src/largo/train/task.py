"""What the training loop trains: the `TrainTask` protocol. `Trainer` owns the loop (data stream, AdamW, EMA,
checkpoints, logs, resume); a task owns the network and its loss. `DiffusionTask` and `AutoencoderTask` are the
two the CLI trains; a caller may hand `Trainer(task=...)` its own (a benchmark's other network, say), as NVlabs/edm's
training loop takes its network from the caller. A task that subclasses `TrainTask` gets the no-op hooks below."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from PIL import Image
from torch import nn

from largo.data import ImageSet
from largo.runtime import DistInfo


class TrainTask(Protocol):
    kind: str  # "diffusion" or "autoencoder": recorded in each checkpoint, checked on resume
    logs: dict[str, float]  # extra numbers for the run's log, refreshed by `loss`/`after_step`
    cache_event: dict | None = None  # a record for log.jsonl at step 0 (e.g. whether latents came from the cache)

    def prepare(self, data: ImageSet) -> tuple[ImageSet, torch.Tensor | None]:
        """The training set the stream draws from and its mirror images (None: flip on the fly); fills the model
        config with what the network sees."""
        ...

    def build_net(self) -> nn.Module:
        """The network to train (the Trainer moves it to its device)."""
        ...

    def loss(self, model_fn: nn.Module, net: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int,
             shard: tuple[int, int]) -> torch.Tensor:
        """The loss of one micro-batch: `model_fn` is the (compiled, DDP-wrapped) network, `net` the bare one."""
        ...

    def grid(self, ema_net: nn.Module, class_names: list[str]) -> Image.Image:
        """The picture of the run's progress, written under RUN/samples/."""
        ...

    def architecture(self, cfg: Any) -> Any:
        """What must match for a run to resume (the model config)."""
        ...

    # -- hooks: no-ops unless a task needs them -----------------------------------------------------------
    def setup(self, net: nn.Module, fused: bool) -> None:
        """After the network and the optimizer are built (e.g. an auxiliary loss or a second optimizer)."""

    def after_step(self, step: int, dist: DistInfo) -> None:
        """After each optimizer step (e.g. a discriminator's step)."""

    def meta(self) -> dict:
        """Extra fields of each checkpoint's meta.json."""
        return {}

    def check_resume(self, meta: dict) -> None:
        """Refuse to resume from a checkpoint this task cannot continue (a one-line LargoError)."""

    def state_dict(self) -> dict:
        """The task's own training state, saved with each checkpoint."""
        return {}

    def load_state_dict(self, state: dict | None) -> None:
        """Restore `state_dict()` on resume."""
