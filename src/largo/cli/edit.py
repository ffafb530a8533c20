"""`largo edit EDIT SOURCE`: edit images with a trained model.

img2img      SDEdit: noise --image to --strength (0 = the image, 1 = plain sampling) and denoise it toward --class
inpaint      fill --mask (centre, left, right, top, bottom or a PNG, white = fill) of --image toward --class; the
             other pixels come back exactly (--method replace, repaint or ddnm)
interpolate  one seed with the class embedding mixed from --classes A,B; or --class C from --seeds S1,S2 (slerp)

--image is a PNG/JPEG file or test:K, the K-th held-out test image of the model's dataset (its class is the default
--class). Every sampling flag applies (--cfg, --cfg-interval, --guide-with, ...). Writes OUT/result.png (or the
strip's frames), OUT/input.png, OUT/grid.png and OUT/edit.json; a refused input writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from largo.cli.sampling_flags import add_sampling_flags, sampling_options
from largo.errors import LargoError

EDITS = ("img2img", "inpaint", "interpolate")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="image-to-image, inpainting and interpolation with a trained model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    es = p.add_subparsers(dest="edit", metavar="EDIT")
    for name, help_ in (("img2img", "SDEdit toward a class"), ("inpaint", "fill a masked region"),
                        ("interpolate", "between two classes at one seed, or two seeds of one class")):
        e = es.add_parser(name, help=help_, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        e.add_argument("source", help="run directory, checkpoint folder or released checkpoint name")
        if name != "interpolate":
            e.add_argument("--image", required=True, help="a PNG/JPEG file, or test:K (a held-out test image)")
        e.add_argument("--class", dest="target", default="", help="target class (name or index)")
        if name == "img2img":
            e.add_argument("--strength", type=float, default=0.6, help="0 = the image, 1 = plain sampling (0.6)")
        if name == "inpaint":
            e.add_argument("--mask", default="centre", help="centre, left, right, top, bottom, or a PNG (white = fill)")
            e.add_argument("--method", default="repaint", choices=("replace", "repaint", "ddnm"),
                           help="repaint (RePaint's resampling, default), ddnm (range-null-space) or replace (naive)")
        if name == "interpolate":
            e.add_argument("--classes", default="", metavar="A,B", help="two classes: mix their embeddings")
            e.add_argument("--seeds", default="", metavar="S1,S2", help="two seeds of --class: slerp their noise")
            e.add_argument("--frames", type=int, default=8, help="images in the strip (2-64, default 8)")
        add_sampling_flags(e)
        e.add_argument("--seed", type=int, default=0, help="the noise seed (default 0)")
        e.add_argument("--device", default="auto")
        e.add_argument("--data-root", default="", help="dataset root for test:K (default: ../shared/data or cache)")
        e.add_argument("--out", type=Path, help="output folder (default ./edits/<model>/<edit>-<class>-seed<S>)")
        e.set_defaults(func=run)


def _pair(text: str, flag: str) -> list[str]:
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if len(parts) != 2:
        raise LargoError(f"{flag} needs two values A,B, got {text!r}")
    return parts


def run(args: argparse.Namespace) -> int:
    from largo.runtime import resolve_device
    from largo.sampling import load_model, parse_classes
    from largo.sampling.edit_folder import default_edit_dir, edit_to_folder

    device = resolve_device(args.device)
    model = load_model(args.source, device, weights=args.weights)
    options = sampling_options(args, model.cfg)
    target = parse_classes([args.target], model.class_names)[0] if args.target else None
    classes = seeds = None
    if args.edit == "interpolate":
        if args.classes:
            classes = tuple(parse_classes(_pair(args.classes, "--classes"), model.class_names))
        elif args.seeds:
            try:
                seeds = tuple(int(s) for s in _pair(args.seeds, "--seeds"))
            except ValueError:
                raise LargoError(f"--seeds needs two integers S1,S2, got {args.seeds!r}") from None
    name = "-".join(model.class_names[c] for c in classes) if classes else \
        (model.class_names[target] if target is not None else "own-class")
    out = args.out or default_edit_dir(model, args.edit, name, args.seed)
    result = edit_to_folder(model, args.edit, options, out, image=getattr(args, "image", ""), target=target,
                            strength=getattr(args, "strength", 0.6), mask=getattr(args, "mask", "centre"),
                            method=getattr(args, "method", "repaint"), classes=classes, seeds=seeds,
                            frames=getattr(args, "frames", 8), seed=args.seed, device=device,
                            data_root=args.data_root)
    r = result.record
    cost = f", {r['evaluations_per_image']:g} network evaluations" if "evaluations_per_image" in r else ""
    print(f"largo: {args.edit} ({options.describe()}{cost}) → {result.grid}")
    return 0
