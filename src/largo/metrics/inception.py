"""The standard FID Inception-v3, through torch-fidelity's `FeatureExtractorInceptionV3` (TensorFlow-1.x-exact
bilinear resize to 299, pool3 2048-d features, unbiased logits for IS). Weights are never downloaded here: they
come from `--inception-weights PATH` or the torch hub cache ($TORCH_HOME/hub/checkpoints, default
~/.cache/torch/hub/checkpoints)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch

from largo.errors import LargoError
from largo.io import sha256_file
from largo.metrics import defaults


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_inception_weights(explicit: str | os.PathLike | None = None) -> Path | None:
    """The weights file: `explicit` (must exist), else the first known file name in the hub cache, else None."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise LargoError(f"--inception-weights {explicit}: no such file")
        return p
    for name in defaults.INCEPTION_WEIGHTS_FILES:
        p = hub_checkpoint_dir() / name
        if p.is_file():
            return p
    return None


def missing_weights_message() -> str:
    return (f"FID/KID/IS skipped: Inception weights {defaults.INCEPTION_WEIGHTS_FILE} not found; download "
            f"{defaults.INCEPTION_URL} into {hub_checkpoint_dir()}/ (or pass --inception-weights PATH)")


@contextmanager
def _weights_only_load():
    """torch-fidelity calls torch.load(weights_only=False); force the safe loader for a file we did not make."""
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


class InceptionFeatures:
    """uint8 (N, C, H, W) → {'features': (N, 2048), 'logits': (N, 1008)}; grayscale is repeated to RGB."""

    name = defaults.INCEPTION_NAME
    resize = defaults.INCEPTION_RESIZE

    def __init__(self, weights: Path, device: str | torch.device = "cpu") -> None:
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:
            raise LargoError("FID/KID/IS need torch-fidelity: pip install 'largo[metrics]'") from None

        self.weights = Path(weights)
        self.sha256 = sha256_file(self.weights)
        self.verified = self.sha256.startswith(defaults.INCEPTION_SHA256_PREFIX)
        try:
            with _weights_only_load():
                self.model = FeatureExtractorInceptionV3(
                    self.name, [defaults.INCEPTION_FEATURE, defaults.INCEPTION_LOGITS],
                    feature_extractor_weights_path=str(self.weights))
        except Exception as e:  # noqa: BLE001 - a wrong or damaged file, said in one line
            raise LargoError(f"Inception weights {self.weights} could not be loaded: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    @property
    def id(self) -> str:
        return f"{self.name}@{self.sha256[:12]}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise LargoError(f"Inception features need 1 or 3 channels, got {images.shape[1]}")
        feats, logits = self.model(images.to(self.device).contiguous())
        return {"features": feats.float().cpu(), "logits": logits.float().cpu()}

    def describe(self) -> dict:
        d = {"extractor": self.name, "weights": str(self.weights), "sha256": self.sha256, "resize": self.resize,
             "verified": self.verified}
        if not self.verified:
            d["warning"] = (f"sha256 does not start with {defaults.INCEPTION_SHA256_PREFIX}: not the standard FID "
                            f"weights, numbers are not comparable with published FID")
        return d
