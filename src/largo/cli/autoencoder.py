"""`largo autoencoder train|eval`: the KL autoencoder that latent diffusion (`largo train --autoencoder PATH`)
runs in, trained with the same loop, checkpoints and logs as `largo train`, and measured on held-out images."""

from __future__ import annotations

import argparse
from pathlib import Path

from largo.config import AUTOENCODER_PRESETS, SPLITS, AutoencoderRunConfig, add_config_flags, flag_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autoencoder", help="train or evaluate the autoencoder for latent diffusion",
                       description="A KL-regularised convolutional autoencoder (f = 4 or 8) for latent diffusion: "
                                   "`train` writes a run directory like `largo train`; `eval` measures "
                                   "reconstructions (PSNR, SSIM, rFD) and the latent statistics.")
    asub = p.add_subparsers(dest="autoencoder_command", metavar="ACTION")
    t = asub.add_parser("train", help="train an autoencoder (writes a run directory)",
                        description="Train an autoencoder: L1/L2 reconstruction + KL + a perceptual term in an offline "
                                    "feature network + an optional patch discriminator switched on after "
                                    "--disc-start steps. Every config field is a flag.")
    t.add_argument("--preset", choices=sorted(AUTOENCODER_PRESETS), help="starting config")
    t.add_argument("--config", type=Path, help="a config.json to start from (e.g. another autoencoder run's)")
    t.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/<name>-<time>)")
    t.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run from its latest checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(t, AutoencoderRunConfig)
    t.set_defaults(func=run_train)

    e = asub.add_parser("eval", help="reconstruction PSNR/SSIM/rFD and latent statistics on held-out images")
    e.add_argument("source", help="autoencoder run, checkpoint folder or export, or a diffusers AutoencoderKL folder")
    e.add_argument("--split", default="test", choices=SPLITS)
    e.add_argument("--n", type=int, default=0, help="images to reconstruct (default 0 = the whole split)")
    e.add_argument("--dataset", help="default: the one the autoencoder was trained on (needed for diffusers folders)")
    e.add_argument("--resolution", type=int, help="default: the autoencoder's training resolution")
    e.add_argument("--data-root", default=None)
    e.add_argument("--classifier", metavar="PATH", help="domain classifier for rFD (default: the shipped one)")
    e.add_argument("--inception-weights", metavar="PATH", help="for rFID (default: the torch hub cache)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="auto")
    e.add_argument("--out", type=Path, help="result JSON (default: RUN/eval/autoencoder-<dataset>-<split>.json)")
    e.set_defaults(func=run_eval)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_train(args: argparse.Namespace) -> int:
    from largo.train import run_config, train

    cfg, run_dir = run_config(AutoencoderRunConfig, preset=args.preset, config=args.config, run_dir=args.run_dir,
                               resume=args.resume, overrides=flag_overrides(args, AutoencoderRunConfig))
    summary = train(cfg, run_dir, resume=bool(args.resume), progress=not args.quiet,
                    log=lambda line: print(f"largo: {line}", flush=True))
    print(f"largo: stopped at step {summary['step']} ({summary['stop_reason']}) after {summary['minutes']:.1f} min")
    print(f"largo: checkpoint {summary['checkpoint']}")
    print(f"largo: reconstructions {summary['grid']}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from largo.evaluation import evaluate_autoencoder

    r, path = evaluate_autoencoder(args.source, args.split, args.n, args.batch_size, args.device, args.dataset,
                                   args.resolution, args.data_root, args.classifier, args.inception_weights, args.out)
    lat, px = r["latents"], r["pixels"]
    print(f"largo: {r['n']} {r['dataset']} {r['split']} images at {r['resolution']}px → latents {lat['shape']}")
    print(f"  PSNR {px['psnr_db']:.2f} dB   SSIM {px['ssim']:.4f}")
    if "rfd_classifier" in r:
        print(f"  rFD {r['rfd_classifier']['value']:.4g} ({r['rfd_classifier']['extractor']}, "
              f"resize {r['rfd_classifier']['resize']})")
    if "rfid" in r:
        print(f"  rFID {r['rfid']['value']:.4g}")
    print("  latent mean " + " ".join(f"{m:+.3f}" for m in lat["mean"]) + "   std "
          + " ".join(f"{s:.3f}" for s in lat["std"]) + f"   scale factor 1/std = {lat['scale_factor']:.4f}")
    for line in r["skipped"]:
        print(line)
    print(f"largo: wrote {path} and {r['picture']}")
    return 0
