"""`largo eval`: sample from a run and evaluate in one go, or evaluate a folder of PNGs (`--images DIR`).

Metrics: FID/KID/IS on the standard Inception-v3 (when its weights are on disk), FD/KID/precision-recall and
label accuracy in the domain classifier's feature space, class-matched FD/KID with a per-class table, and the
pixel variance gap. The result is written as JSON beside the run: RUN_DIR/eval/<name>.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from largo.cli.sampling_flags import add_rerank_flags, add_sampling_flags, flag_label, sampling_overrides
from largo.config import SPLITS
from largo.errors import LargoError


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
    src.add_argument("--resolution", type=int, help="--images: the evaluation resolution; other sizes are resized (shorter side, bicubic) and "
                          "centre-cropped (default: the dataset's, e.g. 32 for Fashion-MNIST, 64 for Flowers-102)")
    smp = p.add_argument_group("sampling (RUN_DIR)")
    smp.add_argument("--n", type=int, default=10_000, help="images to generate (default 10000)")
    add_sampling_flags(smp)
    smp.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (also seeds KID subsets)")
    smp.add_argument("--batch-size", type=int, default=64, help="batch size for sampling and feature extraction")
    add_rerank_flags(smp)
    smp.add_argument("--save-images", action="store_true", help="also write the samples as PNGs under RUN/eval/<name>/")
    ref = p.add_argument_group("reference and metrics")
    ref.add_argument("--data-root", default=None, help="dataset root (default: the run's, else ../shared/data)")
    ref.add_argument("--ref-split", default="train", choices=SPLITS,
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


def run(args: argparse.Namespace) -> int:
    from largo.evaluation import EvalSettings, evaluate_folder, evaluate_run
    from largo.metrics.evaluate import format_summary

    if bool(args.run_dir) == bool(args.images):
        raise LargoError("give either RUN_DIR (sample and evaluate) or --images DIR, not both or neither")
    if args.images and not args.dataset:
        raise LargoError("--images needs --dataset NAME (the real images to compare against)")
    settings = EvalSettings(
        n=args.n, seed=args.seed, batch_size=args.batch_size, ref_split=args.ref_split, ref_n=args.ref_n,
        data_root=args.data_root, classifier=args.classifier, use_classifier=not args.no_classifier,
        inception_weights=args.inception_weights, use_inception=not args.no_inception, kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size, prc_k=args.prc_k, prc_max=args.prc_max, device=args.device,
        rerank=args.rerank or "", candidates=args.candidates, critic=args.critic, clip=args.clip)
    if args.images:
        result, path = evaluate_folder(args.images, args.dataset, settings, args.resolution, args.name, args.out)
    else:
        result, path = evaluate_run(args.run_dir, settings, sampling_overrides(args), weights=args.weights,
                                    name=args.name, out=args.out, save_images=args.save_images, label=flag_label,
                                    log=lambda line: print(line, flush=True))
    if path is not None:  # rank 0 (or the only process)
        print(format_summary(result, per_class=not args.quiet))
        print(f"largo: wrote {path}")
    return 0
