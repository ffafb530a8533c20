"""Feature spaces and batched extraction. A feature space maps uint8 (N, C, H, W) images to a dict with
'features' (N, d) and 'logits' (N, K); it has a `name`, an `id` (name@sha256-prefix of its weights), the
`resize` it applies and `describe()` for the report."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from tqdm import tqdm

from largo.metrics import defaults


class FeatureSpace(Protocol):
    name: str
    resize: str
    sha256: str

    @property
    def id(self) -> str: ...

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def describe(self) -> dict: ...


class ClassifierFeatures:
    """A domain classifier's pooled penultimate features (and logits for label accuracy)."""

    def __init__(self, model, config: dict, device: str | torch.device = "cpu", input_size: int | None = None) -> None:
        """`input_size` larger than the classifier's resolution: images are downsampled to it first (bilinear with
        antialiasing, stated in `resize`), e.g. 128-px flowers scored by the 64-px classifier."""
        self.model = model.to(device).eval()
        self.size = int(config["arch"]["resolution"])
        self.padded = input_size == 28 and self.size == defaults.PAD_28_TO  # the model pads, as the data did
        self.resize = ("none" if input_size in (None, self.size) else "zero-pad-28-to-32" if self.padded
                       else f"bilinear-antialias-{input_size}-to-{self.size}")
        self.config = config
        self.device = torch.device(device)
        self.sha256 = config["sha256"]
        self.name = f"classifier:{defaults.classifier_dirname(config['dataset'], config['arch']['resolution'])}"

    @property
    def id(self) -> str:
        return f"{self.name}@{self.sha256[:12]}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = images.to(self.device)
        if images.shape[-1] != self.size and not self.padded:
            images = F.interpolate(images.float(), size=(self.size, self.size), mode="bilinear", antialias=True,
                                   align_corners=False).round().clamp(0, 255).to(torch.uint8)
        f = self.model.features(images)
        return {"features": f.float().cpu(), "logits": self.model.head(f).float().cpu()}

    def describe(self) -> dict:
        c = self.config
        return {"extractor": self.name, "path": c.get("path"), "sha256": self.sha256, "resize": self.resize,
                "feature_dim": c["arch"]["feature_dim"], "classifier_test_accuracy": c.get("test_accuracy")}


def extract(space: FeatureSpace, images: torch.Tensor, batch_size: int = defaults.FEATURE_BATCH_SIZE,
            progress: str | None = None) -> dict[str, torch.Tensor]:
    """Run `space` over `images` in batches; outputs are concatenated on the CPU (images stay where they are)."""
    outs: dict[str, list[torch.Tensor]] = {}
    batches = images.split(batch_size)
    if progress and len(batches) > 1:
        batches = tqdm(batches, desc=progress, unit="batch", leave=False)
    for batch in batches:
        for k, v in space(batch).items():
            outs.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in outs.items()}
