"""`largo classifier`: train (and check) the small domain classifier that `largo eval` uses as a feature space
and a label checker, with no download."""

from __future__ import annotations

import argparse
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
    t.add_argument("--arch", default="preact-resnet-gn",
                   help="preact-resnet-gn (default) | vgg-bn (plain conv + BatchNorm + max-pooling: a second, "
                        "independent judge)")
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


def run_train(args: argparse.Namespace) -> int:
    from largo.metrics.classifier_training import ClassifierRequest, train_domain_classifier
    from largo.runtime import resolve_device

    req = ClassifierRequest(dataset=args.dataset, resolution=args.resolution, out=args.out, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed, arch=args.arch,
                            device=args.device,
                            data_root=args.data_root, limit=args.limit, test_limit=args.test_limit)
    r, out = train_domain_classifier(req, resolve_device(args.device), log=lambda s: print(f"largo: {s}", flush=True))
    print(f"largo: test accuracy {r.test_accuracy:.4f} on {sum(x['n'] for x in r.per_class)} "
          f"images; saved {out}")
    return 0


def run_test(args: argparse.Namespace) -> int:
    from largo.metrics.classifier_training import test_domain_classifier
    from largo.runtime import resolve_device

    table, config = test_domain_classifier(args.path, args.dataset, args.resolution, resolve_device(args.device),
                                           args.data_root, args.test_limit)
    for row in table["per_class"]:
        print(f"  {row['class']:>3} {row['name'][:24]:<24} n={row['n']:<6} accuracy {row['accuracy']:.4f}")
    n = sum(row["n"] for row in table["per_class"])
    print(f"largo: {config['path']}: test accuracy {table['overall']:.4f} on {n} images "
          f"(recorded: {config.get('test_accuracy', float('nan')):.4f})")
    return 0
