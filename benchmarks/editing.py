"""Editing and guidance on a released checkpoint, scored by the dataset's classifiers (docs/EDITING.md).

    # guidance: CFG over w, CFG with an interval, autoguidance over w, all at one sampler and step count
    python benchmarks/editing.py guidance --model fashion_mnist-28-cpu --guide runs/guide28 --n 500
    # SDEdit: accuracy toward the target and distance to the source against strength, same and another class
    python benchmarks/editing.py sdedit --model fashion_mnist-28-cpu --n 300
    # inpainting: centre and half masks of held-out test images, per method, with evaluations per image
    python benchmarks/editing.py inpaint --model fashion_mnist-28-cpu --n 300
    python benchmarks/editing.py grids --model fashion_mnist-28-cpu --guide runs/guide28 --out docs/editing

Each measurement writes one JSON record (--out, default benchmarks/records/editing/) stating the machine, the
threads, the model, the judges, N, the settings and the seconds, and prints one line per configuration. Judges:
every classifier given (default: both Fashion-MNIST judges, ResNet and VGG, or the flowers classifier); a 28-px
model's images are zero-padded to the judges' 32 px, as the data pipeline pads. FD is in each judge's features;
recall/precision are the k-NN ones (k = 3, at most 2,000 points a side) in the same features.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _common import Judges, machine, score_line
from largo.metrics.classifier import classifier_outputs
from largo.data import load_images
from largo.draw.grid import labelled_grid
from largo.io import atomic_save_image, atomic_write_json
from largo.sampling import SamplingOptions, load_model
from largo.diffusion.samplers import sample
from largo.sampling.edit_folder import named_mask
from largo.sampling.generate import image_shape, make_denoiser
from largo.sampling.editing import image_to_image, inpaint, interpolate_classes, interpolate_seeds

OUT = Path("benchmarks/records/editing")


def guidance(a: argparse.Namespace) -> dict:
    model = load_model(a.model)
    judges = Judges(model.cfg.data.dataset, model.cfg.data.resolution, a.classifiers)
    k = model.cfg.model.num_classes
    labels = torch.arange(a.n) % k
    seeds = [10_000 + i for i in range(a.n)]
    configs = [{"cfg": w} for w in a.cfg] + [{"cfg": w, "cfg_interval": tuple(a.interval)} for w in a.interval_cfg]
    if a.guide:
        configs += [{"cfg": w, "guide_with": a.guide} for w in a.auto]
    rows = []
    for c in configs:
        options = SamplingOptions.resolve(model.cfg, sampler=a.sampler, steps=a.steps, precision=a.precision, **c)
        counter = make_denoiser(model.net, model.cfg, options)
        t0 = time.time()
        images = model.generate(labels, seeds, options, batch_size=a.batch_size)
        seconds = time.time() - t0
        evals = _count_evaluations(model, options, counter, labels[:2], seeds[:2])
        row = {**options.to_dict(), "n": a.n, "seconds": round(seconds, 1), "evaluations_per_image": evals,
               "scores": judges.score(images, labels)}
        print(score_line(f"{options.describe()} interval {options.cfg_interval}", row["scores"],
                    f"; {evals:g} evals/image; {seconds:.0f} s"), flush=True)
        rows.append(row)
    return {"rows": rows}


def _count_evaluations(model, options, denoiser, labels, seeds) -> float:
    """Network evaluations per image of these options (model and guide), counted on one batch."""
    sample(denoiser, (len(labels), *image_shape(model.cfg)), labels, sampler=options.sampler, steps=options.steps,
           seeds=seeds, clip_x0=options.clip_x0)
    return (denoiser.evaluations + denoiser.guide_evaluations) / len(labels)


def _test_images(model, n: int, data_root: str = ""):
    test = load_images(model.cfg.data.dataset, "test", model.cfg.data.resolution, data_root)
    k = model.cfg.model.num_classes
    per = [torch.nonzero(test.labels == c).reshape(-1).tolist() for c in range(k)]
    # class-balanced, interleaved (class 0, 1, …, K-1, 0, 1, …); a class with fewer test images drops out
    idx = torch.tensor([p[r] for r in range(max(map(len, per))) for p in per if r < len(p)][:n])
    return test.images[idx], test.labels[idx]


def sdedit(a: argparse.Namespace) -> dict:
    model = load_model(a.model)
    judges = Judges(model.cfg.data.dataset, model.cfg.data.resolution, a.classifiers)
    k = model.cfg.model.num_classes
    images, labels = _test_images(model, a.n)
    options = SamplingOptions.resolve(model.cfg, sampler=a.sampler, steps=a.steps, cfg=a.w)
    src_feats = {name: classifier_outputs(clf, judges.padded(images))[0] for name, clf, *_ in judges.judges}
    rows = []
    for target_kind, target in (("same", labels), ("other", (labels + a.shift) % k)):
        for s in a.strengths:
            t0 = time.time()
            res = image_to_image(model.net, model.cfg, images, target, s, [20_000 + i for i in range(a.n)], options)
            pix = ((res.images.float() - images.float()) / 255).pow(2).mean((1, 2, 3)).sqrt()
            scores = judges.score(res.images, target, recall=False)
            for name, clf, *_ in judges.judges:
                f = classifier_outputs(clf, judges.padded(res.images))[0]
                scores[name]["feature_distance"] = float((f - src_feats[name]).norm(dim=1).mean())
                scores[name]["source_feature_norm"] = float(src_feats[name].norm(dim=1).mean())
            row = {"target": target_kind, "strength": s, "n": a.n, "pixel_rms": float(pix.mean()),
                   "evaluations_per_image": res.evaluations, "steps": res.steps,
                   "seconds": round(time.time() - t0, 1), "scores": scores}
            print(score_line(f"sdedit {target_kind} strength {s}", scores,
                        f"; pixel RMS {row['pixel_rms']:.3f}; {res.evaluations:g} evals"), flush=True)
            rows.append(row)
    return {"options": options.to_dict(), "shift": a.shift, "rows": rows}


def inpainting(a: argparse.Namespace) -> dict:
    model = load_model(a.model)
    judges = Judges(model.cfg.data.dataset, model.cfg.data.resolution, a.classifiers)
    images, labels = _test_images(model, a.n)
    rows = []
    for mask_name in a.masks:
        mask = named_mask(mask_name, images.shape[-1])
        for spec in a.methods:
            method, steps = spec.split(":")
            options = SamplingOptions.resolve(model.cfg, steps=int(steps), cfg=a.w)
            t0 = time.time()
            res = inpaint(model.net, model.cfg, images, mask, labels, [30_000 + i for i in range(a.n)], options,
                          method=method)
            keep = ~mask.expand_as(images[:, :1]).expand_as(images)
            exact = bool(torch.equal(res.images[keep], images[keep]))
            scores = judges.score(res.images, labels, reference=images, recall=False)
            row = {"mask": mask_name, "method": method, "steps": int(steps), "walked": res.steps, "n": a.n,
                   "evaluations_per_image": res.evaluations, "unmasked_exact": exact,
                   "seconds": round(time.time() - t0, 1), "scores": scores}
            print(score_line(f"inpaint {mask_name} {method} {steps} steps", scores,
                        f"; {res.evaluations:g} evals/image; unmasked exact: {exact}; {row['seconds']:.0f} s"),
                  flush=True)
            rows.append(row)
    return {"cfg": a.w, "rows": rows}


def grids(a: argparse.Namespace) -> dict:
    """The pictures of docs/EDITING.md: SDEdit rows against strength, inpainting per method, interpolation strips,
    guidance at the same seeds."""
    model = load_model(a.model)
    names = model.class_names
    out = Path(a.out)
    test = load_images(model.cfg.data.dataset, "test", model.cfg.data.resolution)
    # default (Fashion-MNIST): the first sneaker, T-shirt, dress and ankle boot of the test split
    pick = [int(torch.nonzero(test.labels == c)[0]) for c in (7, 0, 3, 9)] if not a.pick else a.pick
    src, y = test.images[pick], test.labels[pick]
    opts = SamplingOptions.resolve(model.cfg, steps=a.steps, cfg=a.w)
    strengths = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    target = torch.tensor(a.targets or [5, 8, 1, 7])  # FM: sneaker → sandal, T-shirt → bag, dress → trouser, boot → …
    cols = [image_to_image(model.net, model.cfg, src, target, s, [5 + i for i in range(4)], opts).images
            for s in strengths]
    sd = torch.stack(cols, 1).reshape(-1, *src.shape[1:])
    rows = [f"{names[int(c)]} -> {names[int(t)]}" for c, t in zip(y, target)]
    atomic_save_image(out / "sdedit.png", labelled_grid(sd, len(strengths), rows))
    tiles, row_names = [], []
    for mask_name in ("centre", "left"):
        mask = named_mask(mask_name, src.shape[-1])
        masked = torch.where(mask, torch.full_like(src, 128), src)
        outs = [inpaint(model.net, model.cfg, src, mask, y, [7 + i for i in range(4)],
                        SamplingOptions.resolve(model.cfg, steps=st, cfg=a.w), method=m).images
                for m, st in (("replace", 20), ("ddnm", 20), ("repaint", 20))]
        tiles.append(torch.stack([src, masked, *outs], 1).reshape(-1, *src.shape[1:]))
        row_names += [f"{mask_name}: {names[int(c)]}" for c in y]
    atomic_save_image(out / "inpaint.png", labelled_grid(torch.cat(tiles), 5, row_names))
    pairs = [tuple(a.pairs[i:i + 2]) for i in range(0, len(a.pairs), 2)] if a.pairs else [(7, 5), (0, 6), (9, 7)]
    strips = [interpolate_classes(model.net, model.cfg, a_, b_, 8, 3, opts) for a_, b_ in pairs]
    slerp_class = pairs[0][0] if a.pairs else 8
    strips.append(interpolate_seeds(model.net, model.cfg, slerp_class, 0, 1, 8,
                                    SamplingOptions.resolve(model.cfg, sampler="ddim", steps=a.steps, cfg=a.w)))
    atomic_save_image(out / "interpolate.png", labelled_grid(torch.cat(strips), 8, [
        f"{names[p]} -> {names[q]}" for p, q in pairs] + [f"{names[slerp_class]}: seed 0 -> 1 (slerp)"]))
    if a.guide:
        lab = torch.arange(10).repeat_interleave(2)
        seeds = [10_000 + i for i in range(20)]
        rows_, names_ = [], []
        for tag, kw in (("cfg 1", {"cfg": 1}), ("cfg 3", {"cfg": 3}), ("auto 2", {"cfg": 2, "guide_with": a.guide}),
                        ("auto 3", {"cfg": 3, "guide_with": a.guide})):
            rows_.append(model.generate(lab, seeds, SamplingOptions.resolve(model.cfg, steps=a.steps, **kw)))
            names_.append(tag)
        atomic_save_image(out / "guidance.png", labelled_grid(torch.cat(rows_), 20, names_))
    return {"pictures": [str(p) for p in sorted(out.glob("*.png"))]}


def tables(a: argparse.Namespace) -> None:
    """Markdown tables of every record under --out (default benchmarks/records/editing/), as docs/EDITING.md has them."""
    for path in sorted(Path(a.out or OUT).glob("*.json")):
        rec = json.loads(path.read_text())
        judges = list(rec["rows"][0]["scores"])
        print(f"\n{path.name}: {rec['model']}, {rec['machine']['cpu']}, {rec['machine']['torch_threads']} thread(s)\n")
        if rec["what"] == "guidance":
            head = ["guidance", "w", "evals/image"] + [f"{j} {m}" for j in judges for m in ("acc", "FD", "recall")]
            rows = [[("auto: " + Path(r["guide_with"]).name) if r["guide_with"] else
                     ("CFG " + (f"interval {r['cfg_interval'][0]}-{r['cfg_interval'][1]}" if r["cfg_interval"] else "")),
                     f"{r['cfg']:g}", f"{r['evaluations_per_image']:g}"]
                    + [f"{r['scores'][j][m]:.3f}" if m != "fd" else f"{r['scores'][j][m]:.2f}"
                       for j in judges for m in ("accuracy", "fd", "recall")] for r in rec["rows"]]
        elif rec["what"] == "sdedit":
            head = ["target", "strength", "evals/image", "pixel RMS"] + [
                f"{j} {m}" for j in judges for m in ("acc", "FD", "feature dist")]
            rows = [[r["target"], f"{r['strength']:g}", f"{r['evaluations_per_image']:g}", f"{r['pixel_rms']:.3f}"]
                    + [v for j in judges for v in (f"{r['scores'][j]['accuracy']:.3f}", f"{r['scores'][j]['fd']:.2f}",
                                                   f"{r['scores'][j]['feature_distance']:.2f}")] for r in rec["rows"]]
        else:
            head = ["mask", "method", "steps walked", "evals/image", "unmasked exact"] + [
                f"{j} {m}" for j in judges for m in ("acc", "FD to originals")]
            rows = [[r["mask"], r["method"], str(r["walked"]), f"{r['evaluations_per_image']:g}",
                     "yes" if r["unmasked_exact"] else "NO"]
                    + [v for j in judges for v in (f"{r['scores'][j]['accuracy']:.3f}", f"{r['scores'][j]['fd']:.2f}")]
                    for r in rec["rows"]]
        print("| " + " | ".join(head) + " |")
        print("|" + " --- |" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("guidance", "sdedit", "inpaint", "grids", "tables"))
    p.add_argument("--model", default="fashion_mnist-28-cpu")
    p.add_argument("--guide", default="", help="autoguidance's guide (a run, checkpoint or released name)")
    p.add_argument("--classifiers", nargs="*", default=[], help="judges (default: the dataset's, both for FM)")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--sampler", default="dpmpp2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--precision", default=None, help="guidance: the network's precision (default: the model's)")
    p.add_argument("--cfg", type=float, nargs="*", default=[1.0, 2.0, 3.0, 5.0])
    p.add_argument("--interval", type=int, nargs=2, default=[200, 800])
    p.add_argument("--interval-cfg", type=float, nargs="*", default=[3.0, 5.0])
    p.add_argument("--auto", type=float, nargs="*", default=[1.5, 2.0, 3.0])
    p.add_argument("--w", type=float, default=3.0, help="sdedit/inpaint/grids: the CFG scale")
    p.add_argument("--strengths", type=float, nargs="*", default=[0.2, 0.4, 0.6, 0.8, 1.0])
    p.add_argument("--shift", type=int, default=1, help="sdedit 'other' target: class (c + shift) mod K")
    p.add_argument("--masks", nargs="*", default=["centre", "left"])
    p.add_argument("--methods", nargs="*", default=["replace:20", "ddnm:20", "repaint:20", "replace:80", "ddnm:80"])
    p.add_argument("--pick", type=int, nargs="*", default=[], help="grids: test-split indices of the 4 sources")
    p.add_argument("--targets", type=int, nargs="*", default=[], help="grids: the SDEdit target class of each")
    p.add_argument("--pairs", type=int, nargs="*", default=[], help="grids: class pairs A B A B … to interpolate")
    p.add_argument("--out", default="")
    p.add_argument("--tag", default="")
    a = p.parse_args()
    if a.what == "tables":
        return tables(a)
    t0 = time.time()
    result = {"guidance": guidance, "sdedit": sdedit, "inpaint": inpainting, "grids": grids}[a.what](a)
    record = {"what": a.what, "model": a.model, "guide": a.guide, "args": vars(a), "machine": machine(),
              "seconds": round(time.time() - t0, 1), **result}
    if a.what != "grids":
        dest = Path(a.out or OUT) / f"{a.what}-{Path(a.model).name}{a.tag}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(dest, record)
        print(f"wrote {dest} ({record['seconds']:.0f} s on {record['machine']['cpu']}, "
              f"{record['machine']['torch_threads']} thread(s))")


if __name__ == "__main__":
    main()
