"""Feature spaces and batched extraction. A feature space maps uint8 (N, C, H, W) images to a dict with
'features' (N, d) and 'logits' (N, K); it has a `name`, an `id` (name@sha256-prefix of its weights), the
`resize` it applies and `describe()` for the report."""

from __future__ import annotations

from typing import Protocol

import torch
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

    resize = "none"

    def __init__(self, model, config: dict, device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.sha256 = config["sha256"]
        self.name = f"classifier:{defaults.classifier_dirname(config['dataset'], config['arch']['resolution'])}"

    @property
    def id(self) -> str:
        return f"{self.name}@{self.sha256[:12]}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.model.features(images.to(self.device))
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
