"""Domain classifiers: a small pre-activation ResNet trained on a dataset's real training split. It needs no
download, so `largo eval` always has a feature space: label accuracy of conditional samples, and FD / KID /
precision-recall on its penultimate (globally pooled) features.

On disk a classifier is a folder with `model.safetensors` and `config.json` (architecture, dataset, resolution,
class names, test accuracy, the command that trained it, and the weights' sha256)."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from largo.errors import LargoError
from largo.metrics import defaults

FORMAT = "largo-classifier"
FORMAT_VERSION = 1


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


class DomainClassifier(nn.Module):
    """uint8 (or [-1, 1] float) images → logits; `features()` gives the pooled penultimate vector."""

    def __init__(self, arch: ClassifierArch) -> None:
        super().__init__()
        self.arch = arch
        w = arch.widths
        self.stem = nn.Conv2d(arch.in_channels, w[0], 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(*[_Block(w[max(i - 1, 0)], w[i], 1 if i == 0 else 2, arch.groups)
                                      for i in range(len(w))])
        self.norm = nn.GroupNorm(arch.groups, w[-1])
        self.head = nn.Linear(w[-1], arch.num_classes)

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(self.prepare(x)))
        return F.silu(self.norm(h)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


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


# -- training ------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: DomainClassifier
    test_accuracy: float
    per_class: list[dict]
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _augment(x: torch.Tensor, g: torch.Generator, hflip: bool, pad: int = 2) -> torch.Tensor:
    """Random translation by up to `pad` pixels (zero fill) and, where it keeps the meaning, horizontal flips."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (n, w)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if hflip:
        flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


def train_classifier(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
                     test_labels: torch.Tensor, class_names: list[str], *, epochs: int = defaults.CLASSIFIER_EPOCHS,
                     batch_size: int = defaults.CLASSIFIER_BATCH_SIZE, lr: float = defaults.CLASSIFIER_LR,
                     weight_decay: float = defaults.CLASSIFIER_WEIGHT_DECAY, hflip: bool = True, seed: int = 0,
                     device: str | torch.device = "cpu", widths: tuple[int, ...] = defaults.CLASSIFIER_WIDTHS,
                     log=print) -> TrainResult:
    """AdamW + one-cycle cosine schedule, light augmentation; test accuracy measured after every epoch."""
    if epochs < 1:
        raise LargoError(f"--epochs must be >= 1, got {epochs}")
    if len(train_labels) < 2 or len(test_labels) < 1:
        raise LargoError("classifier training needs a non-empty train and test split")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    arch = ClassifierArch(in_channels=int(train_images.shape[1]), num_classes=len(class_names),
                          resolution=int(train_images.shape[-1]), widths=tuple(widths))
    model = DomainClassifier(arch).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train_labels) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    images_dev, labels_dev = train_images.to(device), train_labels.to(device)
    history, t0 = [], time.time()
    acc = 0.0
    per_class: list[dict] = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(train_labels), generator=g).to(device)
        total, n = 0.0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = _augment(DomainClassifier.prepare(images_dev[idx]), g, hflip)
            loss = F.cross_entropy(model(x), labels_dev[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        _, logits = classifier_outputs(model, test_images, 512, device)
        table = accuracy_table(logits.argmax(1), test_labels, class_names)
        acc, per_class = table["overall"], table["per_class"]
        history.append({"epoch": epoch + 1, "train_loss": total / n, "test_accuracy": acc,
                        "seconds": round(time.time() - t0, 1)})
        log(f"epoch {epoch + 1}/{epochs}  loss {total / n:.4f}  test accuracy {acc:.4f}  ({time.time() - t0:.0f} s)")
    model.eval()
    return TrainResult(model.cpu(), acc, per_class, history, time.time() - t0)


# -- files ---------------------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_classifier(model: DomainClassifier, out_dir: str | Path, meta: dict) -> Path:
    """Write model.safetensors, then config.json (with the weights' sha256), each atomically."""
    from safetensors.torch import save_file

    from largo.io import atomic_write, atomic_write_json

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
    from safetensors.torch import load_file

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


def find_classifier(dataset: str, resolution: int) -> Path | None:
    """The default classifier for a dataset and resolution: in the repository's checkpoints, then the cache."""
    name = defaults.classifier_dirname(dataset, resolution)
    for root in defaults.classifier_search_dirs():
        if (root / name / defaults.CLASSIFIER_CONFIG).is_file():
            return root / name
    return None


def check_classifier(config: dict, dataset: str, resolution: int, channels: int, class_names: list[str]) -> None:
    """A classifier must belong to the dataset, resolution and channels being evaluated."""
    where = config.get("path", "the classifier")
    if config.get("dataset") != dataset:
        raise LargoError(f"classifier {where} was trained on {config.get('dataset')!r}, not {dataset!r}")
    if config["arch"]["resolution"] != resolution:
        raise LargoError(f"classifier {where} is for {config['arch']['resolution']}x{config['arch']['resolution']} "
                         f"images, these are {resolution}x{resolution}")
    if config["arch"]["in_channels"] != channels:
        raise LargoError(f"classifier {where} takes {config['arch']['in_channels']} channel(s), images have {channels}")
    if config.get("class_names") and list(config["class_names"]) != list(class_names):
        raise LargoError(f"classifier {where} has other class names than {dataset}")
