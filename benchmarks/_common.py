"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so this imports as `_common`)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from largo.data import ImageSet, load_images
from largo.metrics.classifier import classifier_outputs, find_classifier, load_classifier
from largo.metrics.fid import fd_from_features
from largo.metrics.prc import precision_recall

PRC_MAX = 2000  # k-NN precision/recall on at most 2,000 real and 2,000 generated features (k = 3)


def load_average() -> str:
    """The 1/5/15-minute load average: other jobs on the machine slow every timed model alike."""
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer measures it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_images(channels: int, classes: int, resolution: int, n: int) -> ImageSet:
    """n seeded random uint8 images of a dataset's shape, classes cycled: `Trainer(data=...)` without the dataset."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, resolution, resolution), dtype=torch.uint8, generator=g)
    return ImageSet(images, torch.arange(n) % classes, [f"class{i}" for i in range(classes)])


def set_fields(cfg, items):
    """`cfg` with SECTION.FIELD=VALUE (or FIELD=VALUE) overrides, the way the scripts' `--set` reads them: VALUE
    is JSON where it parses (28, [7], true), else a bare string (edm); names and types are checked like flags."""
    import json

    from largo.config import check_overrides, with_overrides

    flat = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            flat[key.rpartition(".")[2]] = json.loads(raw)
        except json.JSONDecodeError:
            flat[key.rpartition(".")[2]] = raw
    return with_overrides(cfg, check_overrides(flat, "--set"))


# -- scoring samples by the dataset's judges (benchmarks/editing.py, benchmarks/distill_quality.py) --------
def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""), "torch": torch.__version__,
            "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


class Judges:
    """The dataset's classifiers, each with its features of the real test split."""

    def __init__(self, dataset: str, resolution: int, paths: list[str]):
        judge_res = 32 if resolution == 28 else resolution
        self.pad = 2 if resolution == 28 else 0
        if not paths:
            paths = [str(p) for p in (find_classifier(dataset, judge_res), find_classifier(dataset, judge_res, "-vgg"))
                     if p is not None]
        test = load_images(dataset, "test", judge_res)
        self.judges = []
        for path in paths:
            clf, _ = load_classifier(path)
            feats, logits = classifier_outputs(clf, test.images)
            self.judges.append((Path(path).name, clf, feats, float((logits.argmax(1) == test.labels).float().mean())))

    def padded(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(images, (self.pad,) * 4) if self.pad else images

    def score(self, images: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor | None = None,
              recall: bool = True) -> dict:
        """Per judge: accuracy toward `labels`, FD (to the real test split, or to `reference` images), recall."""
        out = {}
        for name, clf, real_feats, real_acc in self.judges:
            feats, logits = classifier_outputs(clf, self.padded(images))
            row = {"accuracy": float((logits.argmax(1) == labels).float().mean()), "real_test_accuracy": real_acc}
            ref = real_feats if reference is None else classifier_outputs(clf, self.padded(reference))[0]
            row["fd"] = fd_from_features(feats, ref)
            if recall:
                row.update({k: v for k, v in precision_recall(ref, feats, max_samples=PRC_MAX).items() if k in ("precision", "recall")})
            out[name] = row
        return out


def score_line(tag: str, scores: dict, extra: str = "") -> str:
    return f"{tag}: " + "; ".join(f"{j} acc {s['accuracy']:.3f} FD {s['fd']:.2f}" + (
        f" rec {s['recall']:.3f}" if "recall" in s else "") for j, s in scores.items()) + extra
