"""Training batches straight from an in-memory tensor: uint8 images, or float latents (latent diffusion).

Small datasets (Flowers-102 at 64×64 is ~100 MB) live on the training device as uint8; a batch is an index
draw, a gather, a random flip and a scale to [-1, 1], all on that device, so no worker process is needed and
the data order is one seeded generator whose state a checkpoint can save.
"""

from __future__ import annotations

import torch

from largo.data.datasets import ImageSet


def class_balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-image weight 1/N_c: every class is drawn with equal probability (LARGO §4.1.2)."""
    counts = torch.bincount(labels)
    return 1.0 / counts[labels].double()


class BatchStream:
    """Endless seeded stream of (images in [-1, 1], labels) batches with an exact, saveable position.

    Uniform mode walks a fresh permutation each epoch; balanced mode draws each epoch's N indices with
    replacement with probability ∝ 1/N_class. Resuming regenerates the epoch's order from the generator state
    saved at the epoch's start and skips to the saved position.
    """

    def __init__(self, data: ImageSet, batch_size: int, *, balanced: bool = False, hflip: bool = True,
                 seed: int = 0, device: torch.device | str = "cpu", shard: tuple[int, int] = (0, 1),
                 flipped: torch.Tensor | None = None):
        """`data.images` is uint8 images (scaled to [-1, 1] per batch) or float latents (used as they are); for
        latents, `flipped` holds the latents of the mirrored images, which a flip then picks."""
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.flipped = flipped.to(self.device) if flipped is not None else None
        self.labels = data.labels.to(self.device)
        self.batch_size = batch_size  # the global batch; a rank keeps [rank::world] of it
        self.rank, self.world = shard
        self.hflip = hflip
        self.weights = class_balanced_weights(data.labels) if balanced else None
        self.generator = torch.Generator().manual_seed(seed)  # CPU generator: identical order on any device
        self.epoch = 0
        self.position = 0
        self._epoch_start_state = self.generator.get_state()
        self._order = self._draw_order()

    def __len__(self) -> int:
        return len(self.labels)

    def _draw_order(self) -> torch.Tensor:
        n = len(self.labels)
        if self.weights is None:
            return torch.randperm(n, generator=self.generator)
        return torch.multinomial(self.weights, n, replacement=True, generator=self.generator)

    def next_indices(self) -> torch.Tensor:
        """Indices of the next batch; a batch never straddles two epochs' orders."""
        if self.position + self.batch_size > len(self._order):
            self.epoch += 1
            self.position = 0
            self._epoch_start_state = self.generator.get_state()
            self._order = self._draw_order()
        idx = self._order[self.position:self.position + self.batch_size]
        self.position += len(idx)
        return idx

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.next_indices()
        flip = torch.rand(len(idx), generator=self.generator) < 0.5 if self.hflip else None
        # Every rank draws the whole global batch (same generator), then keeps its slice.
        idx = idx[self.rank::self.world].to(self.device)
        flip = flip[self.rank::self.world] if flip is not None else None
        x = self.images[idx]
        x = x.float().div_(127.5).sub_(1.0) if x.dtype == torch.uint8 else x.float()
        if flip is not None:
            flip = flip.to(self.device)
            mirrored = self.flipped[idx].float() if self.flipped is not None else x.flip(-1)
            x = torch.where(flip[:, None, None, None], mirrored, x)
        return x, self.labels[idx]

    @property
    def epoch_fraction(self) -> float:
        return self.epoch + self.position / max(1, len(self._order))

    # -- exact resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        # The flips use the same generator after the order is drawn, so save its *current* state as well.
        return {"epoch": self.epoch, "position": self.position, "epoch_start_state": self._epoch_start_state,
                "generator_state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._epoch_start_state = state["epoch_start_state"]
        self.generator.set_state(self._epoch_start_state)
        self._order = self._draw_order()
        self.generator.set_state(state["generator_state"])
