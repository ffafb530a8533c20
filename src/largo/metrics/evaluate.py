"""`largo eval`'s engine: reference set, feature spaces, every registered metric in every space, variance gap,
one JSON-able result where each number carries N_generated, N_reference, resolution, resize and extractor."""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from largo.data import load_images
from largo.errors import LargoError
from largo.io import atomic_write_json
from largo.metrics import defaults
from largo.metrics.classifier import check_classifier, find_classifier, load_classifier
from largo.metrics.features import ClassifierFeatures, FeatureSpace, extract
from largo.metrics.inception import InceptionFeatures, find_inception_weights, missing_weights_message
from largo.metrics.kid import resolve_subset_size
from largo.metrics.refstats import reference_outputs
from largo.metrics.registry import MetricContext, metrics_for
from largo.metrics.variance_gap import variance_gap

RESULT_FORMAT = "largo-eval"
RESULT_VERSION = 1


@dataclass
class Reference:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    class_names: list[str]
    dataset: str
    split: str
    resolution: int
    data_resize: str
    n_total: int = 0  # size of the split before --ref-n subsampling

    def describe(self) -> dict:
        return {"dataset": self.dataset, "split": self.split, "resolution": self.resolution,
                "data_resize": self.data_resize, "n": int(self.images.shape[0]), "n_split": self.n_total,
                "channels": int(self.images.shape[1])}


@dataclass
class EvalOptions:
    kid_subsets: int = defaults.KID_SUBSETS
    kid_subset_size: int | None = None  # None: min(1000, N_gen, N_ref)
    prc_k: int = defaults.PRC_K
    prc_max: int | None = defaults.PRC_MAX_SAMPLES
    isc_splits: int = defaults.ISC_SPLITS
    batch_size: int = defaults.FEATURE_BATCH_SIZE
    seed: int = defaults.SEED
    skipped: list[dict] = field(default_factory=list)


def data_resize_method(dataset: str, resolution: int) -> str:
    """How `largo.data.load_images` brings the dataset to `resolution` (part of the reference cache key)."""
    if dataset in ("mnist", "fashion_mnist"):
        return {28: "none", 32: "zero-pad-28-to-32"}.get(resolution, "bilinear-antialias")
    if dataset == "cifar10":
        return "none" if resolution == 32 else "bilinear-antialias"
    return "bicubic-shorter-side-center-crop"


def load_reference(dataset: str, split: str = defaults.REF_SPLIT, resolution: int = 32, data_root: str = "",
                   ref_n: int = 0, seed: int = defaults.SEED) -> Reference:

    s = load_images(dataset, split, resolution, data_root)
    images, labels, n_total = s.images, s.labels, len(s.labels)
    if images.shape[0] == 0:
        raise LargoError(f"reference split {dataset}/{split} is empty")
    if ref_n and ref_n < n_total:
        idx = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:ref_n].sort().values
        images, labels = images[idx], labels[idx]
    return Reference(images, labels, list(s.class_names), dataset, split, resolution,
                     data_resize_method(dataset, resolution), n_total)


def check_generated(images: torch.Tensor, labels: torch.Tensor | None, ref: Reference) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise LargoError(f"generated images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n < 2:
        raise LargoError(f"need at least 2 generated images, got {n}")
    rc, rr = ref.images.shape[1], ref.resolution
    if c != rc:
        raise LargoError(f"generated images have {c} channel(s); {ref.dataset} has {rc}")
    if (h, w) != (rr, rr):
        raise LargoError(f"generated images are {w}x{h}; the reference {ref.dataset} is {rr}x{rr} (--resolution)")
    if labels is not None:
        if labels.shape != (n,):
            raise LargoError(f"{n} images but {labels.shape[0]} labels")
        if int(labels.min()) < 0 or int(labels.max()) >= len(ref.class_names):
            raise LargoError(f"labels must be in 0..{len(ref.class_names) - 1}")


def default_classifier(dataset: str, resolution: int) -> tuple[Path | None, int | None]:
    """The shipped classifier at this resolution, else one at a lower resolution of the defaults list that the
    images are downsampled to (128-px flowers → the 64-px classifier); (None, None) when there is none."""
    for size in [resolution] + [r for r in defaults.CLASSIFIER_FALLBACK_SIZES if r < resolution]:
        path = find_classifier(dataset, size)
        if path is not None:
            return path, defaults.judged_size(dataset, size)
    return None, None


def classifier_space(dataset: str, resolution: int, classifier: str | Path | None = None,
                     device: str | torch.device = "cpu") -> ClassifierFeatures | None:
    """The feature space of `classifier` (default: `default_classifier`), downsampling images to its resolution
    when that is lower; None when there is no classifier."""
    path = Path(classifier) if classifier else default_classifier(dataset, resolution)[0]
    if path is None:
        return None
    model, config = load_classifier(path, device)
    return ClassifierFeatures(model, config, device, input_size=resolution)


def build_feature_spaces(ref: Reference, classifier: str | None = None, inception_weights: str | None = None,
                         use_classifier: bool = True, use_inception: bool = True, device: str = "cpu",
                         skipped: list[dict] | None = None) -> list[FeatureSpace]:
    """The classifier space (default location or `classifier`) and the Inception space (weights found or given);
    what is unavailable is appended to `skipped` as {'what', 'why'}: `why` is the one line the CLI prints."""

    skipped = [] if skipped is None else skipped
    spaces: list[FeatureSpace] = []
    channels = int(ref.images.shape[1])
    if use_classifier:
        path, size = (Path(classifier), None) if classifier else default_classifier(ref.dataset, ref.resolution)
        if path is None:
            why = (f"classifier metrics skipped: no classifier for {ref.dataset} at {ref.resolution}px in "
                   f"{' or '.join(str(d) for d in defaults.classifier_search_dirs())}; train one with "
                   f"`largo classifier train --dataset {ref.dataset} --resolution {ref.resolution}` "
                   f"or pass --classifier")
            skipped.append({"what": "classifier", "why": why})
        else:
            model, config = load_classifier(path, device)
            size = size or int(config["arch"]["resolution"])
            check_classifier(config, ref.dataset, size, channels, ref.class_names)
            if size > defaults.judged_size(ref.dataset, ref.resolution):
                raise LargoError(f"classifier {path} is for {size}px images; these are {ref.resolution}px")
            spaces.append(ClassifierFeatures(model, config, device, input_size=ref.resolution))
    if use_inception:
        weights = find_inception_weights(inception_weights)
        if weights is None:
            why = missing_weights_message()
            skipped.append({"what": "inception (FID, KID, IS)", "why": why})
        else:
            spaces.append(InceptionFeatures(weights, device))
    return spaces


def _tag(result: dict, n_gen: int, n_ref: int, ref: Reference, space: FeatureSpace | None) -> dict:
    tag = {"n_generated": n_gen, "n_reference": n_ref, "resolution": ref.resolution,
           "resize": space.resize if space else "none", "data_resize": ref.data_resize,
           "extractor": space.id if space else "pixels"}
    return {**result, **tag}


def evaluate(gen_images: torch.Tensor, gen_labels: torch.Tensor | None, ref: Reference,
             spaces: list[FeatureSpace], options: EvalOptions | None = None, log=print) -> dict:
    """Every registered metric in every feature space, plus the pixel-space variance gap."""
    opts = options or EvalOptions()
    check_generated(gen_images, gen_labels, ref)
    n_gen, n_ref = int(gen_images.shape[0]), int(ref.images.shape[0])
    if opts.kid_subset_size is not None:  # an explicit subset size must fit before any feature is computed

        resolve_subset_size(n_ref, n_gen, opts.kid_subset_size)
    skipped = list(opts.skipped)
    if gen_labels is None:
        skipped.append({"what": "class metrics (accuracy, class-matched FD/KID)",
                        "why": "class metrics (accuracy, class-matched FD/KID) skipped: the generated images "
                               "carry no class labels"})
    ctx = MetricContext(ref.class_names, opts.kid_subsets, opts.kid_subset_size, opts.prc_k, opts.prc_max,
                        opts.isc_splits, opts.seed)
    t0 = time.time()
    result: dict = {
        "format": RESULT_FORMAT, "format_version": RESULT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "n_generated": n_gen, "n_reference": n_ref, "resolution": ref.resolution,
        "reference": ref.describe(), "class_names": ref.class_names,
        "has_labels": gen_labels is not None,
        "options": {"kid_subsets": opts.kid_subsets, "kid_subset_size": opts.kid_subset_size, "prc_k": opts.prc_k,
                    "prc_max": opts.prc_max, "isc_splits": opts.isc_splits, "seed": opts.seed},
        "feature_spaces": {},
        "skipped": skipped,
    }

    for space in spaces:
        ref_out, cache_info = reference_outputs(space, ref.images, ref.labels, dataset=ref.dataset,
                                                split=ref.split, resolution=ref.resolution,
                                                data_resize=ref.data_resize, batch_size=opts.batch_size, log=log)
        gen_out = extract(space, gen_images, opts.batch_size, progress=f"generated {space.name}")
        ref_out = {**ref_out, "labels": ref.labels}
        gen_out = {**gen_out, "labels": gen_labels}
        entry: dict = {**space.describe(), "reference_cache": cache_info}
        for metric in metrics_for(space.name, gen_labels is not None):
            entry[metric.name] = _tag(metric.fn(ref_out, gen_out, ctx), n_gen, n_ref, ref, space)
        result["feature_spaces"][space.name] = entry
    result["variance_gap"] = _tag(variance_gap(ref.images, gen_images), n_gen, n_ref, ref, None)
    result["seconds"] = round(time.time() - t0, 2)
    return result


# -- reporting -----------------------------------------------------------------------------------------
def _f(x, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3e}"


def format_summary(result: dict, per_class: bool = True) -> str:
    lines = [f"N_generated={result['n_generated']}  N_reference={result['n_reference']} "
             f"({result['reference']['dataset']}/{result['reference']['split']})  resolution={result['resolution']}"]
    names = result["class_names"]
    for space, e in result["feature_spaces"].items():
        lines.append(f"[{space}]  resize={e['resize']}  sha256={e['sha256'][:12]}"
                     + ("" if e.get("verified", True) else "  (UNVERIFIED weights)"))
        if "fd" in e:
            label = "FID" if space.startswith("inception") else "FD"
            lines.append(f"  {label:<10} {_f(e['fd']['value'])}")
        if "kid" in e:
            k = e["kid"]
            lines.append(f"  {'KID':<10} {_f(k['mean'])} ± {_f(k['std'])}  "
                         f"({k['subsets']} subsets of {k['subset_size']})")
        if "inception_score" in e:
            s = e["inception_score"]
            lines.append(f"  {'IS':<10} {_f(s['mean'])} ± {_f(s['std'])}  (reference {_f(s['reference'])})")
        if "precision_recall" in e:
            p = e["precision_recall"]
            lines.append(f"  {'precision':<10} {_f(p['precision'])}   recall {_f(p['recall'])}  (k={p['k']})")
        if "accuracy" in e:
            a = e["accuracy"]
            lines.append(f"  {'accuracy':<10} {_f(a['overall'])}  (classifier on the reference: {_f(a['reference'])})")
        if "class_matched" in e:
            cm = e["class_matched"]
            lines.append(f"  class-matched FD {_f(cm['mean']['fd'])}  KID {_f(cm['mean']['kid'])}  "
                         f"over {cm['classes_evaluated']} classes"
                         + (f" ({len(cm['skipped_classes'])} skipped: < 2 images)" if cm["skipped_classes"] else ""))
        if per_class and ("class_matched" in e or "accuracy" in e):
            acc = {r["class"]: r["accuracy"] for r in e.get("accuracy", {}).get("per_class", [])}
            rows = {r["class"]: r for r in e.get("class_matched", {}).get("per_class", [])}
            lines.append(f"    {'class':<24} {'n_gen':>6} {'n_ref':>6} {'FD':>10} {'KID':>10} {'acc':>7}")
            for c in sorted(set(acc) | set(rows)):
                r = rows.get(c, {})
                lines.append(f"    {str(c) + ' ' + names[c][:20]:<24} {r.get('n_generated', '-'):>6} "
                             f"{r.get('n_reference', '-'):>6} {_f(r.get('fd')):>10} {_f(r.get('kid')):>10} "
                             f"{_f(acc.get(c)):>7}")
    v = result["variance_gap"]
    lines.append("[pixels]  var_gen/var_real per channel: " + ", ".join(_f(r) for r in v["var_ratio"])
                 + "   histogram TV: " + ", ".join(_f(h) for h in v["histogram_l1"]))
    if result.get("clip"):
        c = result["clip"]
        q = c["quality_prompts"]
        lines.append(f"[{c['extractor']}]  CLIP score {_f(c['clip_score'])} ('{c['template']}'); good {_f(q['good'])} "
                     f"clear {_f(q['clear'])} blurry {_f(q['blurry'])}")
    if result.get("rerank"):
        r = result["rerank"]
        lines.append(f"[rerank]  best of {r['candidates']} by {r['critic']}: critic score {_f(r['mean_score_kept'])} "
                     f"kept vs {_f(r['mean_score_all'])} over all {r['images_drawn']} drawn")
    for s in result["skipped"]:
        lines.append(s["why"])
    return "\n".join(lines)


def write_result(path: str | Path, result: dict) -> Path:
    """Atomically write the result JSON (temp file in the same folder, fsync, os.replace)."""

    path = Path(path)
    atomic_write_json(path, _jsonable(result))
    return path


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    return x
