"""Domain classifiers: a small pre-activation ResNet (or, as a second opinion of another architecture, a plain
VGG-style network with BatchNorm and max-pooling) trained on a dataset's real training split. It needs no
download, so `largo eval` always has a feature space: label accuracy of conditional samples, and FD / KID /
precision-recall on its penultimate (globally pooled) features.

On disk a classifier is a folder with `model.safetensors` and `config.json` (architecture, dataset, resolution,
class names, test accuracy, the command that trained it, and the weights' sha256)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from largo.errors import LargoError
from largo.io import atomic_write, atomic_write_json, sha256_file
from largo.metrics import defaults

FORMAT = "largo-classifier"
FORMAT_VERSION = 1
# The architectures a classifier can have: the default, and a plain one for an independent second judge (no
# residuals, BatchNorm instead of GroupNorm, ReLU instead of SiLU, max-pooling instead of strided convolutions).
ARCHITECTURES = ("preact-resnet-gn", "vgg-bn")


@dataclass
class ClassifierArch:
    in_channels: int
    num_classes: int
    resolution: int
    widths: tuple[int, ...] = defaults.CLASSIFIER_WIDTHS  # one residual block per stage, stride 2 after the first
    groups: int = defaults.CLASSIFIER_GROUPS  # GroupNorm groups
    name: str = "preact-resnet-gn"

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.skip = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class _VGGStage(nn.Module):
    def __init__(self, cin: int, cout: int, pool: bool) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.pool(x))


class DomainClassifier(nn.Module):
    """uint8 (or [-1, 1] float) images → logits; `features()` gives the pooled penultimate vector."""

    def __init__(self, arch: ClassifierArch) -> None:
        super().__init__()
        if arch.name not in ARCHITECTURES:
            raise LargoError(f"unknown classifier architecture {arch.name!r}; valid: {', '.join(ARCHITECTURES)}")
        self.arch = arch
        w = arch.widths
        if arch.name == "vgg-bn":
            self.stem = nn.Identity()
            self.blocks = nn.Sequential(*[_VGGStage(w[i - 1] if i else arch.in_channels, w[i], pool=i > 0)
                                          for i in range(len(w))])
            self.norm, self.act = nn.Identity(), nn.Identity()  # the last stage ends in BatchNorm + ReLU
        else:
            self.stem = nn.Conv2d(arch.in_channels, w[0], 3, 1, 1, bias=False)
            self.blocks = nn.Sequential(*[_Block(w[max(i - 1, 0)], w[i], 1 if i == 0 else 2, arch.groups)
                                          for i in range(len(w))])
            self.norm, self.act = nn.GroupNorm(arch.groups, w[-1]), nn.SiLU()
        self.head = nn.Linear(w[-1], arch.num_classes)

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """28-px images for a 32-px classifier: zero-padded by 2 pixels, as the data pipeline padded its training
        images (black is the background of Fashion-MNIST and MNIST: 0 in uint8, -1 in [-1, 1])."""
        if x.shape[-1] == 28 and self.arch.resolution == defaults.PAD_28_TO:
            return F.pad(x, (2, 2, 2, 2), value=0 if x.dtype == torch.uint8 else -1.0)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(self.prepare(self.pad(x))))
        return self.act(self.norm(h)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every block (coarser with depth): the layers a perceptual loss compares."""
        h, maps = self.stem(self.prepare(self.pad(x))), []
        for block in self.blocks:
            h = block(h)
            maps.append(h)
        return maps


# -- outputs in batches --------------------------------------------------------------------------------
@torch.no_grad()
def classifier_outputs(model: DomainClassifier, images: torch.Tensor, batch_size: int = 256,
                       device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(features float32 (N, d), logits float32 (N, K)) on the CPU, computed `batch_size` images at a time."""
    model.eval()
    feats, logits = [], []
    for batch in images.split(batch_size):
        f = model.features(batch.to(device))
        feats.append(f.float().cpu())
        logits.append(model.head(f).float().cpu())
    return torch.cat(feats), torch.cat(logits)


def accuracy_table(pred: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict:
    """Overall accuracy and one row per class that has images."""
    rows = []
    for c, name in enumerate(class_names):
        m = labels == c
        n = int(m.sum())
        if n:
            rows.append({"class": c, "name": name, "n": n, "accuracy": float((pred[m] == c).float().mean())})
    return {"overall": float((pred == labels).float().mean()) if len(labels) else None, "per_class": rows}


# -- files ---------------------------------------------------------------------------------------------
def save_classifier(model: DomainClassifier, out_dir: str | Path, meta: dict) -> Path:
    """Write model.safetensors, then config.json (with the weights' sha256), each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / defaults.CLASSIFIER_WEIGHTS
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    arch = asdict(model.arch)
    arch["widths"] = list(arch["widths"])
    arch["feature_dim"] = model.arch.feature_dim
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch, **meta,
              "weights": defaults.CLASSIFIER_WEIGHTS, "sha256": sha256_file(weights),
              "n_parameters": sum(p.numel() for p in model.parameters())}
    atomic_write_json(out / defaults.CLASSIFIER_CONFIG, config)
    return out


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> tuple[DomainClassifier, dict]:
    """Load a classifier folder (or its config.json); the weights' sha256 must match the config's."""
    p = Path(path)
    folder = p.parent if p.is_file() else p
    cfg_path = folder / defaults.CLASSIFIER_CONFIG
    if not cfg_path.is_file():
        raise LargoError(f"no classifier at {path}: expected {cfg_path} (train one with `largo classifier train`)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise LargoError(f"classifier config {cfg_path} is not valid JSON: {e}") from None
    if config.get("format") != FORMAT:
        raise LargoError(f"{cfg_path} is not a largo classifier config (format {config.get('format')!r})")
    weights = folder / config.get("weights", defaults.CLASSIFIER_WEIGHTS)
    if not weights.is_file():
        raise LargoError(f"classifier weights missing: {weights}")
    digest = sha256_file(weights)
    if digest != config.get("sha256"):
        raise LargoError(f"classifier weights {weights} do not match the sha256 in {cfg_path} (corrupt or replaced)")
    a = config["arch"]
    arch = ClassifierArch(in_channels=a["in_channels"], num_classes=a["num_classes"], resolution=a["resolution"],
                          widths=tuple(a["widths"]), groups=a["groups"], name=a.get("name", "preact-resnet-gn"))
    model = DomainClassifier(arch)
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as e:
        raise LargoError(f"classifier weights {weights} do not fit its config: {str(e).splitlines()[0]}") from None
    config["path"] = str(folder)
    return model.to(device).eval(), config


def find_classifier(dataset: str, resolution: int, variant: str = "") -> Path | None:
    """The default classifier for a dataset and resolution (`variant` "-vgg": the independent one of another
    architecture, "-critic": another seed): in the repository's checkpoints, then the cache."""
    name = defaults.classifier_dirname(dataset, defaults.judged_size(dataset, resolution)) + variant
    for root in defaults.classifier_search_dirs():
        if (root / name / defaults.CLASSIFIER_CONFIG).is_file():
            return root / name
    return None


def check_classifier(config: dict, dataset: str, resolution: int, channels: int, class_names: list[str]) -> None:
    """A classifier must belong to the dataset, resolution and channels being evaluated."""
    where = config.get("path", "the classifier")
    if config.get("dataset") != dataset:
        raise LargoError(f"classifier {where} was trained on {config.get('dataset')!r}, not {dataset!r}")
    if config["arch"]["resolution"] != defaults.judged_size(dataset, resolution):
        raise LargoError(f"classifier {where} is for {config['arch']['resolution']}x{config['arch']['resolution']} "
                         f"images, these are {resolution}x{resolution}")
    if config["arch"]["in_channels"] != channels:
        raise LargoError(f"classifier {where} takes {config['arch']['in_channels']} channel(s), images have {channels}")
    if config.get("class_names") and list(config["class_names"]) != list(class_names):
        raise LargoError(f"classifier {where} has other class names than {dataset}")
