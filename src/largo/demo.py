"""`largo demo`: the main job. Train the small "demo" preset on Fashion-MNIST on this machine within a time
budget, draw one row per class, and check the samples with the shipped domain classifier; or draw flowers from
the released Flowers-102 model."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from largo.config import RunConfig, preset_config
from largo.draw.grid import labelled_grid
from largo.errors import LargoError
from largo.io import atomic_save_image, atomic_write_json
from largo.metrics.classifier import accuracy_table, classifier_outputs, find_classifier, load_classifier
from largo.runtime import describe_precision, resolve_device
from largo.sampling import generate_images, load_model, parse_classes
from largo.train import Trainer

Log = Callable[[str], Any]


def run_demo(minutes: float | None = None, run_dir: Path | None = None, data_root: str = "", device: str = "auto",
             per_class: int = 8, check_per_class: int = 30, log: Log = print) -> dict:
    """Train, sample a grid, check recognisability. Returns {"run_dir", "grid", "accuracy", "independent_accuracy",
    "steps"}; the last line logged is the recognisability verdict."""
    cfg = preset_config("demo")
    cfg.data = dataclasses.replace(cfg.data, data_root=data_root)
    cfg.train = dataclasses.replace(cfg.train, device=device, **({"max_minutes": minutes} if minutes is not None else {}))
    run_dir = run_dir or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / "config.json").exists():
        raise LargoError(f"{run_dir} already holds a run; choose another --run-dir")
    t0 = time.time()
    trainer = Trainer(cfg, run_dir)
    log(f"largo demo: training {sum(p.numel() for p in trainer.net.parameters()) / 1e6:.2f} M-parameter U-Net on "
        f"Fashion-MNIST {describe_size(cfg)} for {cfg.train.max_minutes:g} min on {trainer.device} in "
        f"{describe_precision(trainer.amp_dtype, trainer.device)}; batch {cfg.train.batch_size}, "
        f"{cfg.diffusion.prediction}-prediction, {cfg.diffusion.loss_weighting} weighting, class embedding "
        f"{cfg.model.class_embedding}, {cfg.model.upsample.replace('_', ' + ')} upsampling (run: {run_dir})")
    summary = trainer.fit()
    log(f"largo demo: trained {summary['step']} steps ({summary['step'] * cfg.train.batch_size} images) in "
        f"{summary['minutes']:.1f} min")
    net, names, s = trainer.ema.net, trainer.class_names, cfg.sample
    labels = torch.arange(len(names)).repeat_interleave(per_class)
    t1 = time.time()
    images = generate_images(net, cfg, labels, device=trainer.device)
    grid_path = run_dir / "demo_grid.png"
    atomic_save_image(grid_path, labelled_grid(images, per_class, names))
    log(f"largo demo: {len(images)} samples ({s.sampler}, {s.sample_steps} steps, cfg {s.cfg:g}, x̂0 "
        f"{'clipped' if s.clip_x0 else 'not clipped'}) in "
        f"{time.time() - t1:.0f} s → {grid_path}")
    check = check_with_classifiers(net, cfg, names, check_per_class, trainer.device, run_dir)
    log(f"largo demo: done in {(time.time() - t0) / 60:.1f} min. Grid: {grid_path}  Run: {run_dir}")
    log(check["line"])
    return {"run_dir": str(run_dir), "grid": str(grid_path), "accuracy": check.get("sample_accuracy"),
            "independent_accuracy": check.get("independent_sample_accuracy"), "steps": summary["step"]}


def describe_size(cfg: RunConfig) -> str:
    r = cfg.data.resolution
    return f"{r}×{r}" + (" (its own size; judged zero-padded to 32×32, as the data pipeline pads)" if r == 28 else "")


def check_with_classifiers(net: torch.nn.Module, cfg: RunConfig, names: list[str], per_class: int,
                           device: torch.device, run_dir: Path) -> dict:
    """Share of samples the shipped domain classifier assigns to their conditioning class, and the same share by
    the independent classifier of another architecture where it is shipped (a recipe only one of them likes is
    not a finding); written to RUN/eval/demo_classifier.json. The dict's "line" says it in one line."""
    path = find_classifier(cfg.data.dataset, cfg.data.resolution)
    if path is None:
        return {"line": "largo demo: no Fashion-MNIST classifier found; skipped the recognisability check"}
    labels = torch.arange(len(names)).repeat_interleave(per_class)
    seeds = [10_000 + i for i in range(len(labels))]  # different images from the grid's
    images = generate_images(net, cfg, labels, seeds, device=device)
    result = {"n_generated": len(labels), "sampler": cfg.sample.sampler, "steps": cfg.sample.sample_steps,
              "cfg": cfg.sample.cfg}
    for key, where in (("", path), ("independent_", find_classifier(cfg.data.dataset, cfg.data.resolution, "-vgg"))):
        if where is None:
            continue
        classifier, meta = load_classifier(where)
        table = accuracy_table(classifier_outputs(classifier, images)[1].argmax(1), labels, names)
        result.update({f"{key}sample_accuracy": table["overall"], f"{key}classifier": str(where),
                       f"{key}classifier_arch": meta["arch"].get("name"),
                       f"{key}classifier_test_accuracy_real": meta.get("test_accuracy"),
                       f"{key}per_class": {row["name"]: row["accuracy"] for row in table["per_class"]}})
    atomic_write_json(run_dir / "eval" / "demo_classifier.json", result)
    per = result["per_class"]
    worst = min(per, key=per.get)
    line = (f"largo demo: the classifier recognises {result['sample_accuracy']:.0%} of {len(labels)} samples as their "
            f"class (real test images: {result['classifier_test_accuracy_real']:.1%})")
    if "independent_sample_accuracy" in result:
        line += (f"; an independent one of another architecture: {result['independent_sample_accuracy']:.0%} (real: "
                 f"{result['independent_classifier_test_accuracy_real']:.1%})")
    result["line"] = line + f"; hardest class: {worst} ({per[worst]:.0%})"
    return result


def flowers_demo(classes: str, per_class: int = 4, out: Path | None = None, device: str = "auto",
                 log: Log = print) -> Path:
    """Samples from the released Flowers-102 model, with the settings its model card recommends."""
    dev = resolve_device(device)
    model = load_model("flowers102-64", dev)
    picked = parse_classes(classes, model.class_names)
    per = min(per_class, 4)
    labels = torch.tensor([c for c in picked for _ in range(per)])
    s = model.cfg.sample
    t0 = time.time()
    images = model.generate(labels, device=dev, progress=True)
    out = out or Path("runs") / f"demo-flowers-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_image(out / "flowers_grid.png", labelled_grid(images, per, [model.class_names[c] for c in picked]))
    log(f"largo demo: {len(images)} flowers from checkpoints/flowers102-64 ({s.sampler}, {s.sample_steps} steps, "
        f"cfg {s.cfg:g}) in {time.time() - t0:.0f} s on {dev} → {out / 'flowers_grid.png'}")
    return out / "flowers_grid.png"
