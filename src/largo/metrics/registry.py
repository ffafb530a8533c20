"""A small registry of the metrics computed in every feature space (torch-fidelity style): each entry says what
it needs and which feature spaces it applies to; `largo eval` runs all that apply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from largo.metrics import defaults
from largo.metrics.class_matched import class_matched, default_class_metrics
from largo.metrics.classifier import accuracy_table
from largo.metrics.fid import fd_from_features
from largo.metrics.isc import inception_score
from largo.metrics.kid import kid
from largo.metrics.prc import precision_recall


@dataclass
class MetricContext:
    class_names: list[str]
    kid_subsets: int = defaults.KID_SUBSETS
    kid_subset_size: int | None = None
    prc_k: int = defaults.PRC_K
    prc_max: int | None = defaults.PRC_MAX_SAMPLES
    isc_splits: int = defaults.ISC_SPLITS
    seed: int = defaults.SEED


@dataclass
class Metric:
    name: str
    fn: Callable[[dict, dict, MetricContext], dict]  # (reference outputs, generated outputs, context) -> result
    description: str
    needs_labels: bool = False  # class labels of the generated images
    spaces: tuple[str, ...] = field(default_factory=tuple)  # feature-space name prefixes; () = all

    def applies(self, space_name: str, have_labels: bool) -> bool:
        if self.needs_labels and not have_labels:
            return False
        return not self.spaces or any(space_name.startswith(s) for s in self.spaces)


METRICS: dict[str, Metric] = {}


def register_metric(name: str, description: str, needs_labels: bool = False, spaces: tuple[str, ...] = ()):
    def wrap(fn):
        METRICS[name] = Metric(name, fn, description, needs_labels, spaces)
        return fn
    return wrap


@register_metric("fd", "Fréchet distance of Gaussians fitted to the features (FID in Inception space)")
def _fd(ref: dict, gen: dict, ctx: MetricContext) -> dict:
    return {"value": fd_from_features(ref["features"], gen["features"])}


@register_metric("kid", "unbiased MMD², cubic polynomial kernel, mean ± std over subsets")
def _kid(ref: dict, gen: dict, ctx: MetricContext) -> dict:
    return kid(ref["features"], gen["features"], ctx.kid_subsets, ctx.kid_subset_size, ctx.seed)


@register_metric("precision_recall", f"Kynkäänniemi et al. 2019 precision/recall, k={defaults.PRC_K}")
def _prc(ref: dict, gen: dict, ctx: MetricContext) -> dict:
    if min(len(ref["features"]), len(gen["features"])) <= ctx.prc_k:
        return {"precision": None, "recall": None, "k": ctx.prc_k,
                "note": f"skipped: k-NN radii need more than k={ctx.prc_k} images a side"}
    return precision_recall(ref["features"], gen["features"], ctx.prc_k, ctx.prc_max, ctx.seed)


@register_metric("class_matched", "FD and KID of class c generated vs class c real, averaged over classes",
                 needs_labels=True)
def _class_matched(ref: dict, gen: dict, ctx: MetricContext) -> dict:
    return class_matched(ref["features"], ref["labels"], gen["features"], gen["labels"], ctx.class_names,
                         default_class_metrics(ctx.kid_subsets, ctx.kid_subset_size, ctx.seed))


@register_metric("inception_score", "Inception Score of the generated images (and of the reference)",
                 spaces=(defaults.INCEPTION_NAME,))
def _isc(ref: dict, gen: dict, ctx: MetricContext) -> dict:
    out = inception_score(gen["logits"], ctx.isc_splits)
    out["reference"] = inception_score(ref["logits"], ctx.isc_splits)["mean"]
    return out


@register_metric("accuracy", "domain-classifier accuracy of the samples against their conditioning labels",
                 needs_labels=True, spaces=("classifier:",))
def _accuracy(ref: dict, gen: dict, ctx: MetricContext) -> dict:
    out = accuracy_table(gen["logits"].argmax(1), gen["labels"], ctx.class_names)
    out["reference"] = accuracy_table(ref["logits"].argmax(1), ref["labels"], ctx.class_names)["overall"]
    return out


def metrics_for(space_name: str, have_labels: bool) -> list[Metric]:
    return [m for m in METRICS.values() if m.applies(space_name, have_labels)]


def as_outputs(features: torch.Tensor, labels: torch.Tensor | None = None, logits: torch.Tensor | None = None) -> dict:
    """Bundle tensors the way metric functions take them."""
    return {"features": features, "labels": labels, "logits": logits}
