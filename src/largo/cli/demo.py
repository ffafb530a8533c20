"""`largo demo`: the main job. Trains a small class-conditional model on Fashion-MNIST on the CPU within a
wall-clock budget, draws one row per class, and checks the samples with the shipped domain classifier."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a small Fashion-MNIST model on this machine and show its samples",
                       description="Train the 'demo' preset under a time budget, sample one row per class and "
                                   "report how many samples the Fashion-MNIST classifier recognises.")
    p.add_argument("--minutes", type=float, default=None, help="training budget (default: the demo preset's)")
    p.add_argument("--run-dir", type=Path, help="default: runs/demo-<time>")
    p.add_argument("--data-root", default="", help="dataset root (default: ../shared/data when present)")
    p.add_argument("--device", default="auto")
    p.add_argument("--per-class", type=int, default=8, help="images per class in the grid")
    p.add_argument("--check-per-class", type=int, default=20, help="samples per class the classifier checks")
    p.add_argument("--flowers", action="store_true",
                   help="instead of training, draw flowers from the released flowers102-64 checkpoint on this "
                        "machine (one row per class)")
    p.add_argument("--classes", default="sunflower,rose,passion flower,daffodil",
                   help="--flowers: comma-separated class names or indices")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from largo.config import preset_config
    from largo.errors import LargoError
    from largo.generate import generate_images
    from largo.train.trainer import Trainer
    from largo.viz.grid import labelled_grid

    if args.flowers:
        return _flowers(args)
    cfg = preset_config("demo")
    cfg.data = dataclasses.replace(cfg.data, data_root=args.data_root)
    cfg.train = dataclasses.replace(cfg.train, device=args.device,
                                    **({"max_minutes": args.minutes} if args.minutes is not None else {}))
    run_dir = args.run_dir or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / "config.json").exists():
        raise LargoError(f"{run_dir} already holds a run; choose another --run-dir")
    t0 = time.time()
    trainer = Trainer(cfg, run_dir)
    print(f"largo demo: training {sum(p.numel() for p in trainer.net.parameters()) / 1e6:.2f} M-parameter U-Net on "
          f"Fashion-MNIST 32×32 for {cfg.train.max_minutes:g} min on {trainer.device} (run: {run_dir})", flush=True)
    summary = trainer.fit()
    print(f"largo demo: trained {summary['step']} steps ({summary['step'] * cfg.train.batch_size} images) in "
          f"{summary['minutes']:.1f} min", flush=True)

    net, names, s = trainer.ema.net, trainer.class_names, cfg.sample
    labels = torch.arange(len(names)).repeat_interleave(args.per_class)
    t1 = time.time()
    images = generate_images(net, cfg, labels, device=trainer.device)
    grid_path = run_dir / "demo_grid.png"
    labelled_grid(images, args.per_class, names).save(grid_path)
    print(f"largo demo: {len(images)} samples ({s.sampler}, {s.sample_steps} steps, cfg {s.cfg:g}) in "
          f"{time.time() - t1:.0f} s → {grid_path}", flush=True)
    _check_with_classifier(net, cfg, names, args.check_per_class, trainer.device, run_dir)
    print(f"largo demo: done in {(time.time() - t0) / 60:.1f} min. Grid: {grid_path}  Run: {run_dir}")
    return 0


def _check_with_classifier(net, cfg, names, per_class, device, run_dir) -> None:
    """Share of samples the shipped Fashion-MNIST classifier assigns to their conditioning class."""
    import torch

    from largo.generate import generate_images
    from largo.io import atomic_write_json
    from largo.metrics.classifier import classifier_outputs, find_classifier, load_classifier

    path = find_classifier(cfg.data.dataset, cfg.data.resolution)
    if path is None:
        print("largo demo: no Fashion-MNIST classifier found; skipping the recognisability check")
        return
    classifier, meta = load_classifier(path)
    labels = torch.arange(len(names)).repeat_interleave(per_class)
    seeds = [10_000 + i for i in range(len(labels))]  # different images from the grid's
    images = generate_images(net, cfg, labels, seeds, device=device)
    pred = classifier_outputs(classifier, images)[1].argmax(1)
    acc = float((pred == labels).float().mean())
    per = {names[c]: float((pred[labels == c] == c).float().mean()) for c in range(len(names))}
    real = meta.get("test_accuracy")
    atomic_write_json(run_dir / "eval" / "demo_classifier.json",
                      {"sample_accuracy": acc, "per_class": per, "n_generated": len(labels),
                       "classifier": str(path), "classifier_test_accuracy_real": real,
                       "sampler": cfg.sample.sampler, "steps": cfg.sample.sample_steps, "cfg": cfg.sample.cfg})
    worst = min(per, key=per.get)
    print(f"largo demo: the classifier recognises {acc:.0%} of {len(labels)} samples as their class "
          f"(real test images: {real:.1%}); hardest class: {worst} ({per[worst]:.0%})" if real is not None else
          f"largo demo: the classifier recognises {acc:.0%} of {len(labels)} samples as their class")


def _flowers(args: argparse.Namespace) -> int:
    """Samples from the released Flowers-102 model, with the settings its model card recommends."""
    import torch

    from largo.cli.sample import parse_classes
    from largo.generate import generate_images
    from largo.train.checkpoint import load_for_sampling
    from largo.train.trainer import resolve_device
    from largo.viz.grid import labelled_grid

    device = resolve_device(args.device)
    net, cfg, names = load_for_sampling("flowers102-64", device)
    classes = parse_classes(args.classes, names)
    per = min(args.per_class, 4)
    labels = torch.tensor([c for c in classes for _ in range(per)])
    s = cfg.sample
    t0 = time.time()
    images = generate_images(net, cfg, labels, device=device, progress=True)
    out = args.run_dir or Path("runs") / f"demo-flowers-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    labelled_grid(images, per, [names[c] for c in classes]).save(out / "flowers_grid.png")
    print(f"largo demo: {len(images)} flowers from checkpoints/flowers102-64 ({s.sampler}, {s.sample_steps} steps, "
          f"cfg {s.cfg:g}) in {time.time() - t0:.0f} s on {device} → {out / 'flowers_grid.png'}")
    return 0
