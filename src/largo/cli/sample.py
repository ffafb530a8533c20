"""`largo sample`: images from a run, a checkpoint folder or a released checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from largo.cli.sampling_flags import add_rerank_flags, add_sampling_flags, sampling_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate images from a trained model",
                       description="Generate class-conditional samples: a grid (one row per class) and one "
                                   "PNG per image.")
    p.add_argument("source", help="run directory, checkpoint folder or released checkpoint name")
    p.add_argument("--classes", default="", help="comma-separated class names or indices (default: all, "
                                                  "at most 16 rows spread over the labels)")
    p.add_argument("--n", type=int, default=8, help="images per class (default 8)")
    add_sampling_flags(p)
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    add_rerank_flags(p)
    p.add_argument("--out", type=Path, help="output folder (default: RUN/samples/<settings>, or "
                                            "./samples/<name>/<settings> for a released checkpoint)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from largo.runtime import resolve_device
    from largo.sampling import load_model, parse_classes, sample_to_folder

    device = resolve_device(args.device)
    model = load_model(args.source, device, weights=args.weights, steps=args.steps)
    options = sampling_options(args, model.cfg)
    classes = parse_classes(args.classes, model.class_names)
    generate, note = None, ""
    if args.rerank:
        from largo.critics import check_candidates, generate_reranked, load_critic

        check_candidates(args.candidates)
        critic = load_critic(args.rerank, model, args.critic, device, clip=args.clip)
        generate = lambda labels, seeds, options, **kw: generate_reranked(  # noqa: E731
            model, labels, seeds, options, critic, args.candidates, **kw)[0]
        note = f", best of {args.candidates} by {critic.name}"
    result = sample_to_folder(model, classes, args.n, options, seed=args.seed, batch_size=args.batch_size,
                              device=device, out=args.out, progress=True, generate=generate)
    print(f"largo: {len(result.images)} images ({options.sampler}, {options.steps} steps, cfg "
          f"{options.cfg:g}{note}) → {result.grid}")
    return 0
