"""`largo eval`: sample from a run and evaluate in one go, or evaluate a folder of PNGs (`--images DIR`).

Metrics: FID/KID/IS on the standard Inception-v3 (when its weights are on disk), FD/KID/precision-recall and
label accuracy in the domain classifier's feature space, class-matched FD/KID with a per-class table, and the
pixel variance gap. The result is written as JSON beside the run: RUN_DIR/eval/<name>.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from largo.cli.sampling_flags import add_sampling_flags, resolve_sampling


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run's samples or a folder of images (FID, KID, IS, classifier metrics)",
                       description="Evaluate generated images against a dataset's real images. Either RUN_DIR "
                                   "(samples are generated: seeded, batched, classes cycled 0..K-1) or --images DIR "
                                   "(class sub-folders named by index or class name, or a flat folder) with --dataset.")
    p.add_argument("run_dir", nargs="?", help="run directory or checkpoint folder to sample from")
    src = p.add_argument_group("images instead of a run")
    src.add_argument("--images", type=Path, metavar="DIR", help="evaluate the PNGs in DIR instead of sampling")
    src.add_argument("--dataset", help="reference dataset for --images (flowers102, fashion_mnist, mnist, cifar10, "
                                       "folder:PATH)")
    src.add_argument("--resolution", type=int, help="--images: expected size (default: the images')")
    smp = p.add_argument_group("sampling (RUN_DIR)")
    smp.add_argument("--n", type=int, default=10_000, help="images to generate (default 10000)")
    add_sampling_flags(smp)
    smp.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (also seeds KID subsets)")
    smp.add_argument("--batch-size", type=int, default=64, help="batch size for sampling and feature extraction")
    smp.add_argument("--save-images", action="store_true", help="also write the samples as PNGs under RUN/eval/<name>/")
    ref = p.add_argument_group("reference and metrics")
    ref.add_argument("--data-root", default=None, help="dataset root (default: the run's, else ../shared/data)")
    ref.add_argument("--ref-split", default="train", choices=("train", "test", "all"),
                     help="real split to compare against (default train)")
    ref.add_argument("--ref-n", type=int, default=0, help="use a seeded random subset of N reference images (0 = all)")
    ref.add_argument("--classifier", metavar="PATH", help="domain classifier folder (default: "
                     "checkpoints/classifiers/<dataset>-<res>/, then the cache)")
    ref.add_argument("--no-classifier", action="store_true", help="skip the classifier metrics")
    ref.add_argument("--inception-weights", metavar="PATH",
                     help="pt_inception-2015-12-05-6726825d.pth (default: the torch hub cache)")
    ref.add_argument("--no-inception", action="store_true", help="skip FID/KID/IS")
    ref.add_argument("--kid-subsets", type=int, default=100)
    ref.add_argument("--kid-subset-size", type=int, default=None,
                     help="default: min(1000, N_generated, N_reference); an explicit size must fit")
    ref.add_argument("--prc-k", type=int, default=3, help="k of the k-NN manifolds for precision/recall")
    ref.add_argument("--prc-max", type=int, default=10_000, help="subsample each side to at most this for P/R")
    ref.add_argument("--device", default="auto")
    out = p.add_argument_group("output")
    out.add_argument("--name", help="result name (default: from the settings)")
    out.add_argument("--out", type=Path, help="result JSON path (default: RUN_DIR/eval/<name>.json; for --images "
                                              "DIR/../eval/<DIR name>.json)")
    out.add_argument("--quiet", action="store_true", help="no per-class table")
    p.set_defaults(func=run)


def _num(x: float) -> str:
    return f"{x:g}".replace("-", "m")


def _check_args(args: argparse.Namespace) -> None:
    from largo.errors import LargoError

    if bool(args.run_dir) == bool(args.images):
        raise LargoError("give either RUN_DIR (sample and evaluate) or --images DIR, not both or neither")
    if args.images and not args.dataset:
        raise LargoError("--images needs --dataset NAME (the real images to compare against)")
    if args.n < 2 or args.batch_size < 1:
        raise LargoError("--n must be >= 2 and --batch-size >= 1")
    if args.ref_n < 0 or args.kid_subsets < 1 or args.prc_k < 1 or args.prc_max < 2:
        raise LargoError("--ref-n must be >= 0, --kid-subsets and --prc-k >= 1, --prc-max >= 2")
    if args.kid_subset_size is not None and args.kid_subset_size < 2:
        raise LargoError("--kid-subset-size must be >= 2")


def run(args: argparse.Namespace) -> int:
    import torch

    from largo.cli.classifier import resolve_device
    from largo.errors import LargoError
    from largo.metrics.evaluate import (EvalOptions, build_feature_spaces, evaluate, format_summary, load_reference,
                                        write_result)
    from largo.metrics.kid import resolve_subset_size

    from largo.train.distributed import init_distributed, local_device, shutdown

    _check_args(args)
    device = resolve_device(args.device)
    # Under torchrun, sampling is split across ranks; every rank computes the metrics, rank 0 writes them.
    dist_info = init_distributed(device)
    device = local_device(device, dist_info)
    opts = EvalOptions(kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size, prc_k=args.prc_k,
                       prc_max=args.prc_max, batch_size=args.batch_size, seed=args.seed)
    source: dict

    if args.images:
        from largo.metrics.folder import load_image_folder, probe_resolution

        resolution = args.resolution or probe_resolution(args.images)  # also: not a folder / empty -> error
        ref = load_reference(args.dataset, args.ref_split, resolution, args.data_root or "", args.ref_n, args.seed)
        images, labels, info = load_image_folder(args.images, ref.class_names, int(ref.images.shape[1]), resolution)
        if args.kid_subset_size is not None:
            resolve_subset_size(len(ref.labels), len(images), args.kid_subset_size)
        spaces = build_feature_spaces(ref, args.classifier, args.inception_weights, not args.no_classifier,
                                      not args.no_inception, str(device), opts.skipped)
        source = {"kind": "images", **info}
        name = args.name or args.images.resolve().name
        out_path = args.out or args.images.resolve().parent / "eval" / f"{name}.json"
    else:
        from largo.generate import generate_images
        from largo.train.checkpoint import load_for_sampling, read_meta, resolve_checkpoint

        ckpt = resolve_checkpoint(args.run_dir)
        net, cfg, class_names = load_for_sampling(ckpt, device, weights=args.weights)
        sm = resolve_sampling(args, cfg)
        k = cfg.model.num_classes
        data_root = cfg.data.data_root if args.data_root is None else args.data_root
        ref = load_reference(cfg.data.dataset, args.ref_split, cfg.data.resolution, data_root, args.ref_n, args.seed)
        if k and k != len(ref.class_names):
            raise LargoError(f"the run has {k} classes but {cfg.data.dataset} has {len(ref.class_names)}")
        if args.kid_subset_size is not None:
            resolve_subset_size(len(ref.labels), args.n, args.kid_subset_size)
        spaces = build_feature_spaces(ref, args.classifier, args.inception_weights, not args.no_classifier,
                                      not args.no_inception, str(device), opts.skipped)
        labels = torch.arange(args.n) % k if k else None
        seeds = [args.seed + i for i in range(args.n)]
        print(f"largo: sampling {args.n} images ({sm.sampler}, {sm.steps} steps, cfg {sm.cfg_scale:g}, eta {sm.eta:g}, "
              f"{sm.spacing}) on {device}", flush=True)
        images = generate_images(net, cfg, labels if labels is not None else torch.zeros(args.n, dtype=torch.long),
                                 seeds, **sm.kwargs(),
                                 batch_size=args.batch_size, device=device, progress=True, dist_info=dist_info)
        run_root = _run_root(Path(args.run_dir), ckpt)
        meta = read_meta(ckpt)
        source = {"kind": "run", "run_dir": str(run_root), "checkpoint": str(ckpt), "step": meta.get("step"),
                  "weights": args.weights, "sampler": sm.sampler, "steps": sm.steps, "cfg": sm.cfg_scale,
                  "eta": sm.eta, "clip_x0": sm.clip_x0, "cfg_interval": sm.cfg_interval, "precision": sm.precision,
                  "spacing": sm.spacing, "seed": args.seed, "n": args.n, "batch_size": args.batch_size,
                  "classes": "cycled 0..K-1" if k else "unconditional"}
        name = args.name or (f"{ckpt.name}-{sm.sampler}-{sm.steps}steps-cfg{_num(sm.cfg_scale)}-eta{_num(sm.eta)}-"
                             f"n{args.n}-seed{args.seed}")
        out_path = args.out or run_root / "eval" / f"{name}.json"
        if args.save_images and dist_info.is_main:
            _save_pngs(images, labels, out_path.parent / name)

    result = evaluate(images, labels, ref, spaces, opts)
    result = {"name": name, "source": source, **result}
    if dist_info.is_main:
        write_result(out_path, result)
        print(format_summary(result, per_class=not args.quiet))
        print(f"largo: wrote {out_path}")
    shutdown(dist_info)
    return 0


def _run_root(given: Path, ckpt: Path) -> Path:
    for p in (given, ckpt.parent.parent):
        if (p / "config.json").is_file() or (p / "checkpoints").is_dir():
            return p
    return ckpt


def _save_pngs(images, labels, folder: Path) -> None:
    from PIL import Image

    for i, img in enumerate(images):
        sub = folder / (str(int(labels[i])) if labels is not None else "")
        sub.mkdir(parents=True, exist_ok=True)
        arr = img.permute(1, 2, 0).numpy()
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(sub / f"{i:06d}.png")


