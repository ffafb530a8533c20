"""`largo classifier`: train (and check) the small domain classifier that `largo eval` uses as a feature space
and a label checker, with no download."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classifier", help="train or test the domain classifier used by `largo eval`",
                       description="Domain classifiers for `largo eval`: label accuracy of conditional samples and "
                                   "FD/KID/precision-recall in the classifier's feature space.")
    csub = p.add_subparsers(dest="classifier_command", metavar="ACTION")

    t = csub.add_parser("train", help="train a classifier on a dataset's real training split",
                        description="Train a small ResNet classifier on the training split, measure its accuracy "
                                    "on the test split, save model.safetensors + config.json.")
    t.add_argument("--dataset", required=True, help="flowers102 | fashion_mnist | mnist | cifar10 | folder:PATH")
    t.add_argument("--resolution", type=int, default=32)
    t.add_argument("--out", type=Path,
                   help="output folder (default: the cache's classifiers/<dataset>-<res>/, where eval finds it)")
    t.add_argument("--epochs", type=int, default=None, help="default 10")
    t.add_argument("--batch-size", type=int, default=None, help="default 256")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate of the one-cycle schedule (default 3e-3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--data-root", default="", help="dataset root (default: ../shared/data or the cache)")
    t.add_argument("--limit", type=int, default=0, help="train on the first N training images only (tests)")
    t.add_argument("--test-limit", type=int, default=0, help="measure on the first N test images only (tests)")
    t.set_defaults(func=run_train)

    e = csub.add_parser("test", help="measure a classifier's accuracy on its dataset's test split")
    e.add_argument("path", nargs="?", type=Path,
                   help="classifier folder (default: the one eval would use for --dataset/--resolution)")
    e.add_argument("--dataset", help="default: the classifier's")
    e.add_argument("--resolution", type=int, help="default: the classifier's")
    e.add_argument("--device", default="auto")
    e.add_argument("--data-root", default="")
    e.add_argument("--test-limit", type=int, default=0)
    e.set_defaults(func=run_test)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def resolve_device(name: str):
    import torch

    from largo.errors import LargoError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise LargoError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LargoError(f"--device {name}: CUDA is not available here")
    return dev


def _command(args: argparse.Namespace) -> str:
    parts = ["largo", "classifier", "train", "--dataset", args.dataset, "--resolution", str(args.resolution)]
    for flag, value in (("--out", args.out), ("--epochs", args.epochs), ("--batch-size", args.batch_size),
                        ("--lr", args.lr), ("--seed", args.seed), ("--device", args.device),
                        ("--data-root", args.data_root), ("--limit", args.limit), ("--test-limit", args.test_limit)):
        if value not in (None, "", 0) or (flag == "--seed" and value):
            parts += [flag, str(value)]
    return shlex.join(parts)


def run_train(args: argparse.Namespace) -> int:
    import datetime as dt
    import platform

    import torch

    from largo.data import load_images
    from largo.errors import LargoError
    from largo.metrics import defaults
    from largo.metrics.classifier import save_classifier, train_classifier

    epochs = defaults.CLASSIFIER_EPOCHS if args.epochs is None else args.epochs
    batch_size = defaults.CLASSIFIER_BATCH_SIZE if args.batch_size is None else args.batch_size
    lr = defaults.CLASSIFIER_LR if args.lr is None else args.lr
    if epochs < 1 or batch_size < 1 or lr <= 0 or args.limit < 0 or args.test_limit < 0:
        raise LargoError("--epochs and --batch-size must be >= 1, --lr > 0, --limit/--test-limit >= 0")
    if args.resolution < 8:
        raise LargoError("--resolution must be >= 8")
    device = resolve_device(args.device)
    train = load_images(args.dataset, "train", args.resolution, args.data_root)
    test = load_images(args.dataset, "test", args.resolution, args.data_root)
    tr_x, tr_y = train.images, train.labels
    te_x, te_y = test.images, test.labels
    if args.limit:
        tr_x, tr_y = tr_x[:args.limit], tr_y[:args.limit]
    if args.test_limit:
        te_x, te_y = te_x[:args.test_limit], te_y[:args.test_limit]
    out = args.out or _default_out(args.dataset, args.resolution)
    hflip = args.dataset not in defaults.NO_HFLIP_DATASETS
    print(f"largo: training a classifier on {args.dataset} ({len(tr_y)} train / {len(te_y)} test images, "
          f"{args.resolution}px, {len(train.class_names)} classes) on {device}", flush=True)
    r = train_classifier(tr_x, tr_y, te_x, te_y, list(train.class_names), epochs=epochs, batch_size=batch_size,
                         lr=lr, hflip=hflip, seed=args.seed, device=device,
                         log=lambda s: print(f"largo: {s}", flush=True))
    meta = {
        "dataset": args.dataset, "resolution": args.resolution, "class_names": list(train.class_names),
        "test_accuracy": r.test_accuracy, "test_per_class_accuracy": r.per_class,
        "n_train": int(len(tr_y)), "n_test": int(len(te_y)), "test_split": "test",
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": args.seed, "hflip": hflip,
        "augment": "random translation up to 2 px" + (" + horizontal flip" if hflip else ""),
        "optimizer": f"AdamW(weight_decay={defaults.CLASSIFIER_WEIGHT_DECAY}), one-cycle cosine",
        "command": _command(args), "data_root": args.data_root or "default (see largo.paths.default_data_root)",
        "device": str(device), "train_seconds": round(r.seconds, 1),
        "history": r.history, "torch_version": torch.__version__, "platform": platform.platform(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    save_classifier(r.model, out, meta)
    print(f"largo: test accuracy {r.test_accuracy:.4f} on {len(te_y)} images; saved {out}")
    return 0


def _default_out(dataset: str, resolution: int) -> Path:
    from largo.metrics import defaults
    from largo.paths import cache_dir

    return cache_dir("classifiers") / defaults.classifier_dirname(dataset, resolution)


def run_test(args: argparse.Namespace) -> int:
    from largo.data import load_images
    from largo.errors import LargoError
    from largo.metrics.classifier import (accuracy_table, check_classifier, classifier_outputs, find_classifier,
                                          load_classifier)

    device = resolve_device(args.device)
    path = args.path
    if path is None:
        if not args.dataset:
            raise LargoError("give a classifier folder or --dataset (and --resolution)")
        path = find_classifier(args.dataset, args.resolution or 32)
        if path is None:
            raise LargoError(f"no classifier for {args.dataset} at {args.resolution or 32}px; train one with "
                             f"`largo classifier train --dataset {args.dataset}`")
    model, config = load_classifier(path, device)
    dataset = args.dataset or config["dataset"]
    resolution = args.resolution or config["arch"]["resolution"]
    test = load_images(dataset, "test", resolution, args.data_root)
    check_classifier(config, dataset, resolution, test.channels, list(test.class_names))
    x, y = test.images, test.labels
    if args.test_limit:
        x, y = x[:args.test_limit], y[:args.test_limit]
    _, logits = classifier_outputs(model, x, 512, device)
    table = accuracy_table(logits.argmax(1), y, list(test.class_names))
    for row in table["per_class"]:
        print(f"  {row['class']:>3} {row['name'][:24]:<24} n={row['n']:<6} accuracy {row['accuracy']:.4f}")
    print(f"largo: {config['path']}: test accuracy {table['overall']:.4f} on {len(y)} images "
          f"(recorded: {config.get('test_accuracy', float('nan')):.4f})")
    return 0
