"""Sample-then-evaluate, the one pipeline behind `largo eval` and every `largo sweep` cell, and the evaluation of
a folder of images. The metrics themselves live in `largo.metrics`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from largo.critics import ClipCritic, check_candidates, clip_scores, generate_reranked, load_critic
from largo.errors import LargoError
from largo.images import write_pngs
from largo.metrics.evaluate import EvalOptions, Reference, build_feature_spaces, evaluate, load_reference, write_result
from largo.metrics import defaults
from largo.metrics.folder import list_image_folder, load_image_folder
from largo.metrics.kid import resolve_subset_size
from largo.runtime import DistInfo, PeakMemory, resolve_device
from largo.runtime.distributed import init_distributed, local_device, shutdown
from largo.sampling import LoadedModel, SamplingOptions, load_model


@dataclass
class EvalSettings:
    """What an evaluation compares against and how (everything but the sampling options)."""

    n: int = 10_000  # images to generate
    seed: int = 0  # image i uses seed SEED+i; also seeds KID subsets and the reference subset
    batch_size: int = 64  # sampling and feature extraction
    ref_split: str = "train"
    ref_n: int = 0  # seeded subset of the reference split (0 = all)
    data_root: str | None = None  # None: the run's
    classifier: str | None = None  # domain classifier folder (None: the shipped one)
    use_classifier: bool = True
    inception_weights: str | None = None
    use_inception: bool = True
    kid_subsets: int = 100
    kid_subset_size: int | None = None
    prc_k: int = 3
    prc_max: int = 10_000
    device: str = "auto"
    rerank: str = ""  # "classifier": keep the best of `candidates` images per image by the critic
    candidates: int = 4
    critic: str | None = None  # the critic classifier (None: the dataset's second classifier)
    clip: str | None = None  # ARCH:PATH of CLIP weights: CLIP scores (and --rerank clip)

    def check(self) -> None:
        if self.n < 2 or self.batch_size < 1:
            raise LargoError("--n must be >= 2 and --batch-size >= 1")
        if self.ref_n < 0 or self.kid_subsets < 1 or self.prc_k < 1 or self.prc_max < 2:
            raise LargoError("--ref-n must be >= 0, --kid-subsets and --prc-k >= 1, --prc-max >= 2")
        if self.kid_subset_size is not None and self.kid_subset_size < 2:
            raise LargoError("--kid-subset-size must be >= 2")
        if self.rerank:
            check_candidates(self.candidates)

    def eval_options(self, skipped: list[dict] | None = None) -> EvalOptions:
        return EvalOptions(kid_subsets=self.kid_subsets, kid_subset_size=self.kid_subset_size, prc_k=self.prc_k,
                           prc_max=self.prc_max, batch_size=self.batch_size, seed=self.seed,
                           skipped=list(skipped or []))


@dataclass
class Judge:
    """The real images and feature spaces a set of generated images is compared with (built once, reused)."""

    ref: Reference
    spaces: list
    skipped: list[dict] = field(default_factory=list)
    clip: ClipCritic | None = None  # CLIP scores, when weights were given


def make_judge(dataset: str, resolution: int, settings: EvalSettings, device: torch.device, data_root: str = "",
               num_classes: int = 0, n_generated: int | None = None) -> Judge:
    """Load the reference split and the feature spaces; what is unavailable is listed in `skipped`."""
    ref = load_reference(dataset, settings.ref_split, resolution, data_root, settings.ref_n, settings.seed)
    if num_classes and num_classes != len(ref.class_names):
        raise LargoError(f"the run has {num_classes} classes but {dataset} has {len(ref.class_names)}")
    if settings.kid_subset_size is not None and n_generated is not None:
        resolve_subset_size(len(ref.labels), n_generated, settings.kid_subset_size)
    skipped: list[dict] = []
    spaces = build_feature_spaces(ref, settings.classifier, settings.inception_weights, settings.use_classifier,
                                  settings.use_inception, str(device), skipped)
    return Judge(ref, spaces, skipped, ClipCritic(settings.clip, device) if settings.clip else None)


@dataclass
class SampledEval:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor | None  # None for an unconditional model
    result: dict  # the metrics (largo.metrics.evaluate.evaluate)
    timing: dict  # generate_s, s_per_image, cpu_s, cpu_s_per_image, eval_s
    memory: PeakMemory  # peak memory while generating
    rerank: dict | None = None  # what re-ranking drew and what the critic thought of it


def sample_and_evaluate(model: LoadedModel, options: SamplingOptions, judge: Judge, settings: EvalSettings,
                        device: torch.device, dist_info: DistInfo | None = None, progress: bool = False,
                        log: Callable[[str], Any] = print) -> SampledEval:
    """Generate `settings.n` images (class i mod K, seed SEED+i), timed and memory-measured, and evaluate them."""
    k, n = model.cfg.model.num_classes, settings.n
    labels = torch.arange(n) % k if k else torch.zeros(n, dtype=torch.long)
    seeds = [settings.seed + i for i in range(n)]
    rerank = None
    with PeakMemory(device) as memory:
        t0, c0 = time.perf_counter(), time.process_time()
        kwargs = {"batch_size": settings.batch_size, "device": device, "progress": progress, "dist_info": dist_info}
        if settings.rerank:
            critic = load_critic(settings.rerank, model, settings.critic, device, clip=settings.clip)
            images, rerank = generate_reranked(model, labels, seeds, options, critic, settings.candidates, **kwargs)
        else:
            images = model.generate(labels, seeds, options, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        gen_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    result = evaluate(images, labels if k else None, judge.ref, judge.spaces, settings.eval_options(judge.skipped),
                      log=log)
    timing = {"generate_s": gen_s, "s_per_image": gen_s / n, "cpu_s": cpu_s, "cpu_s_per_image": cpu_s / n,
              "eval_s": time.perf_counter() - t1}
    if rerank:
        result["rerank"] = rerank
    add_clip_scores(result, judge, images, labels if k else None)
    return SampledEval(images, labels if k else None, result, timing, memory, rerank)


def add_clip_scores(result: dict, judge: Judge, images: torch.Tensor, labels: torch.Tensor | None) -> None:
    """result["clip"] when CLIP weights were given and the images carry labels; else a line in `skipped`."""
    if judge.clip is None:
        why = "CLIP scores skipped: no --clip ARCH:PATH weights given (nothing is downloaded)"
    elif labels is None:
        why = "CLIP scores skipped: the images carry no class labels to build prompts from"
    else:
        result["clip"] = clip_scores(judge.clip, images, labels, judge.ref.class_names, judge.ref.dataset)
        return
    result["skipped"].append({"what": "clip", "why": why})


def _num(x: float) -> str:
    return f"{x:g}".replace("-", "m")


def run_source(model: LoadedModel, options: SamplingOptions, weights: str, settings: EvalSettings) -> dict:
    """The `source` record of a result sampled from a model (`largo eval` and every sweep cell): which weights,
    the sampling options under their own names, and the images drawn."""
    return {"kind": "run", "run_dir": str(model.run_dir or Path(".")), "checkpoint": str(model.checkpoint),
            "step": model.step, "weights": weights, **options.to_dict(), "seed": settings.seed, "n": settings.n,
            "batch_size": settings.batch_size,
            "classes": "cycled 0..K-1" if model.cfg.model.num_classes else "unconditional"}


def evaluate_run(source: str | Path, settings: EvalSettings, sampling: dict | None = None, weights: str = "ema",
                 name: str | None = None, out: Path | None = None, save_images: bool = False,
                 label: Callable[[str], str] = str, log: Callable[[str], Any] = print
                 ) -> tuple[dict, Path | None]:
    """Sample from a run/checkpoint/released model and evaluate (`largo eval RUN`). Under torchrun the sampling is
    split across ranks; every rank computes the metrics and rank 0 writes RUN/eval/<name>.json (returned; None
    on the other ranks). `sampling` holds `SamplingOptions.resolve` overrides."""
    settings.check()
    dist_info = init_distributed(resolve_device(settings.device))
    device = local_device(resolve_device(settings.device), dist_info)
    model = load_model(source, device, weights=weights, steps=(sampling or {}).get("steps"))  # a distilled run's student
    options = SamplingOptions.resolve(model.cfg, **(sampling or {}), label=label)
    cfg = model.cfg
    data_root = cfg.data.data_root if settings.data_root is None else settings.data_root
    judge = make_judge(cfg.data.dataset, cfg.data.resolution, settings, device, data_root, cfg.model.num_classes,
                       settings.n)
    log(f"largo: sampling {settings.n} images ({options.sampler}, {options.steps} steps, cfg {options.cfg:g}, "
        f"eta {options.eta:g}, {options.spacing}) on {device}")
    run = sample_and_evaluate(model, options, judge, settings, device, dist_info, progress=True, log=log)
    root = model.run_dir or Path(".")  # a released model's results go where the user is
    source_info = run_source(model, options, weights, settings)
    rerank = f"-rerank{settings.candidates}" if settings.rerank else ""
    name = name or (f"{model.checkpoint.name}-{options.sampler}-{options.steps}steps-cfg{_num(options.cfg)}-"
                    f"eta{_num(options.eta)}-n{settings.n}-seed{settings.seed}{rerank}")
    out_path = out or root / "eval" / f"{name}.json"
    result = {"name": name, "source": source_info, **run.result}
    if dist_info.is_main:
        if save_images:
            folder = out_path.parent / name
            write_pngs(run.images, [folder / (str(int(run.labels[i])) if run.labels is not None else "") /
                                    f"{i:06d}.png" for i in range(len(run.images))])
        write_result(out_path, result)
    shutdown(dist_info)
    return result, out_path if dist_info.is_main else None


def evaluate_folder(images: Path, dataset: str, settings: EvalSettings, resolution: int | None = None,
                    name: str | None = None, out: Path | None = None) -> tuple[dict, Path]:
    """Evaluate the images of a folder (class sub-folders named by index or class name, or flat) against a
    dataset's real images (`largo eval --images DIR --dataset NAME`); writes DIR/../eval/<name>.json. Images are
    brought to `resolution` (default: the dataset's evaluation resolution, e.g. 32 for Fashion-MNIST) by the
    datasets' resize rule."""
    settings.check()
    device = resolve_device(settings.device)
    resolution = resolution or defaults.EVAL_RESOLUTIONS.get(dataset, defaults.DEFAULT_EVAL_RESOLUTION)
    if not 8 <= resolution <= 1024:
        raise LargoError(f"--resolution must be in [8, 1024], got {resolution}")
    list_image_folder(Path(images))  # not a folder, or no images: one line before anything is loaded
    judge = make_judge(dataset, resolution, settings, device, settings.data_root or "")
    gen, labels, info = load_image_folder(images, judge.ref.class_names, int(judge.ref.images.shape[1]), resolution)
    if settings.kid_subset_size is not None:
        resolve_subset_size(len(judge.ref.labels), len(gen), settings.kid_subset_size)
    result = evaluate(gen, labels, judge.ref, judge.spaces, settings.eval_options(judge.skipped))
    add_clip_scores(result, judge, gen, labels)
    name = name or images.resolve().name
    out_path = out or images.resolve().parent / "eval" / f"{name}.json"
    result = {"name": name, "source": {"kind": "images", **info}, **result}
    write_result(out_path, result)
    return result, out_path


def evaluate_images(images: torch.Tensor | list, labels: torch.Tensor | list[int] | None, dataset: str,
                    settings: EvalSettings | None = None) -> dict:
    """Metrics of a set of images against `dataset`'s real images: uint8 (N, C, H, W) or a list of PIL images,
    all of one square size; `labels` (class index per image) enable the class metrics."""
    settings = settings or EvalSettings()
    settings.check()
    if isinstance(images, list):
        arrays = [np.asarray(im) for im in images]
        images = torch.from_numpy(np.stack([a[:, :, None] if a.ndim == 2 else a for a in arrays])).permute(0, 3, 1, 2)
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long)
    device = resolve_device(settings.device)
    judge = make_judge(dataset, int(images.shape[-1]), settings, device, settings.data_root or "",
                       n_generated=len(images))
    return evaluate(images.contiguous(), labels, judge.ref, judge.spaces, settings.eval_options(judge.skipped))
