"""Training the domain classifier: AdamW with a one-cycle schedule and light augmentation on a dataset's real
training split, test accuracy after every epoch (`largo classifier train|test`)."""

from __future__ import annotations

import datetime as dt
import math
import platform
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from largo.data import load_images
from largo.errors import LargoError
from largo.metrics import defaults
from largo.metrics.classifier import (ARCHITECTURES, ClassifierArch, DomainClassifier, accuracy_table, check_classifier,
                                      classifier_outputs, find_classifier, load_classifier, save_classifier)
from largo.paths import cache_dir


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
                     arch_name: str = ARCHITECTURES[0], log=print) -> TrainResult:
    """AdamW + one-cycle cosine schedule, light augmentation; test accuracy measured after every epoch."""
    if epochs < 1:
        raise LargoError(f"--epochs must be >= 1, got {epochs}")
    if len(train_labels) < 2 or len(test_labels) < 1:
        raise LargoError("classifier training needs a non-empty train and test split")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    arch = ClassifierArch(in_channels=int(train_images.shape[1]), num_classes=len(class_names),
                          resolution=int(train_images.shape[-1]), widths=tuple(widths), name=arch_name)
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


@dataclass
class ClassifierRequest:
    """`largo classifier train`'s settings (None: the defaults in `largo.metrics.defaults`)."""

    dataset: str
    resolution: int = 32
    out: Path | None = None  # default: the cache's classifiers/<dataset>-<res>/, where eval finds it
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    arch: str = ARCHITECTURES[0]
    device: str = "auto"
    data_root: str = ""
    limit: int = 0  # train on the first N training images only (tests)
    test_limit: int = 0

    def command(self) -> str:
        """The command line that reproduces this classifier (recorded in its config.json)."""
        parts = ["largo", "classifier", "train", "--dataset", self.dataset, "--resolution", str(self.resolution)]
        for flag, value in (("--out", self.out), ("--epochs", self.epochs), ("--batch-size", self.batch_size),
                            ("--lr", self.lr), ("--seed", self.seed),
                            ("--arch", None if self.arch == ARCHITECTURES[0] else self.arch), ("--device", self.device),
                            ("--data-root", self.data_root), ("--limit", self.limit),
                            ("--test-limit", self.test_limit)):
            if value not in (None, "", 0):
                parts += [flag, str(value)]
        return shlex.join(parts)


def default_classifier_dir(dataset: str, resolution: int) -> Path:
    return cache_dir("classifiers") / defaults.classifier_dirname(dataset, resolution)


def train_domain_classifier(req: ClassifierRequest, device: torch.device, log=print) -> tuple[TrainResult, Path]:
    """Train on the dataset's train split, measure on its test split, save weights + config.json."""
    epochs = defaults.CLASSIFIER_EPOCHS if req.epochs is None else req.epochs
    batch_size = defaults.CLASSIFIER_BATCH_SIZE if req.batch_size is None else req.batch_size
    lr = defaults.CLASSIFIER_LR if req.lr is None else req.lr
    if epochs < 1 or batch_size < 1 or lr <= 0 or req.limit < 0 or req.test_limit < 0:
        raise LargoError("--epochs and --batch-size must be >= 1, --lr > 0, --limit/--test-limit >= 0")
    if req.arch not in ARCHITECTURES:
        raise LargoError(f"unknown --arch {req.arch!r}; valid: {', '.join(ARCHITECTURES)}")
    if req.resolution < 8:
        raise LargoError("--resolution must be >= 8")
    train = load_images(req.dataset, "train", req.resolution, req.data_root)
    test = load_images(req.dataset, "test", req.resolution, req.data_root)
    tr_x, tr_y = train.images[:req.limit or None], train.labels[:req.limit or None]
    te_x, te_y = test.images[:req.test_limit or None], test.labels[:req.test_limit or None]
    out = req.out or default_classifier_dir(req.dataset, req.resolution)
    hflip = req.dataset not in defaults.NO_HFLIP_DATASETS
    log(f"training a classifier on {req.dataset} ({len(tr_y)} train / {len(te_y)} test images, {req.resolution}px, "
        f"{len(train.class_names)} classes) on {device}")
    r = train_classifier(tr_x, tr_y, te_x, te_y, list(train.class_names), epochs=epochs, batch_size=batch_size,
                         lr=lr, hflip=hflip, seed=req.seed, device=device, arch_name=req.arch, log=log)
    meta = {
        "dataset": req.dataset, "resolution": req.resolution, "class_names": list(train.class_names),
        "test_accuracy": r.test_accuracy, "test_per_class_accuracy": r.per_class,
        "n_train": int(len(tr_y)), "n_test": int(len(te_y)), "test_split": "test",
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": req.seed, "hflip": hflip,
        "augment": "random translation up to 2 px" + (" + horizontal flip" if hflip else ""),
        "optimizer": f"AdamW(weight_decay={defaults.CLASSIFIER_WEIGHT_DECAY}), one-cycle cosine",
        "command": req.command(), "data_root": req.data_root or "default (see largo.paths.default_data_root)",
        "device": str(device), "train_seconds": round(r.seconds, 1),
        "history": r.history, "torch_version": torch.__version__, "platform": platform.platform(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    save_classifier(r.model, out, meta)
    return r, out


def test_domain_classifier(path: Path | None, dataset: str | None, resolution: int | None, device: torch.device,
                           data_root: str = "", test_limit: int = 0) -> tuple[dict, dict]:
    """(accuracy table on the test split, the classifier's config); `path` None: the one eval would use."""
    if path is None:
        if not dataset:
            raise LargoError("give a classifier folder or --dataset (and --resolution)")
        path = find_classifier(dataset, resolution or 32)
        if path is None:
            raise LargoError(f"no classifier for {dataset} at {resolution or 32}px; train one with "
                             f"`largo classifier train --dataset {dataset}`")
    model, config = load_classifier(path, device)
    dataset = dataset or config["dataset"]
    resolution = resolution or config["arch"]["resolution"]
    test = load_images(dataset, "test", resolution, data_root)
    check_classifier(config, dataset, resolution, test.channels, list(test.class_names))
    x, y = test.images[:test_limit or None], test.labels[:test_limit or None]
    _, logits = classifier_outputs(model, x, 512, device)
    return accuracy_table(logits.argmax(1), y, list(test.class_names)), config
