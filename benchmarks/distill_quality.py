"""Few-step students of `largo distill` against their teacher (docs/DISTILL.md).

    python -m largo distill fashion_mnist-28-cpu --steps 8 --to 1 --cfg 3 --iters-per-round 400 --lr 2e-4 \\
        --out runs/distill-fmnist28
    python benchmarks/distill_quality.py --students runs/distill-fmnist28 --n 500 --grids docs/distill

Per model (the teacher at its sampler and steps, the teacher at few DDIM steps (--baselines), each student at its own step count with ddim, all at guidance w):
class accuracy by each judge, FD and recall in each judge's features (benchmarks/_common.Judges: both
Fashion-MNIST judges by default), network evaluations per image and CPU milliseconds per image (fp32, the
generation of all N images timed, batch --batch-size), and a class grid per model (8 seeds a class, the same seeds
for every model). One JSON record under --out states the machine, threads, load, N and the distillation's
CPU minutes per round (from the run's distill.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _common import Judges, load_average, machine, score_line
from largo.diffusion.samplers import sample
from largo.io import atomic_save_image, atomic_write_json
from largo.sampling import SamplingOptions, class_grid, load_model
from largo.sampling.generate import image_shape, make_denoiser

OUT = Path("benchmarks/records/distill")


def evaluations_per_image(model, options) -> float:
    denoiser = make_denoiser(model.net, model.cfg, options)
    labels = torch.tensor([0, 1])
    sample(denoiser, (2, *image_shape(model.cfg)), labels, sampler=options.sampler, steps=options.steps,
           seeds=[0, 1], clip_x0=options.clip_x0)
    return denoiser.evaluations / 2


def measure(tag: str, model, options, judges: Judges, a: argparse.Namespace) -> dict:
    k = model.cfg.model.num_classes
    labels = torch.arange(a.n) % k
    seeds = [a.first_seed + i for i in range(a.n)]
    model.generate(labels[:4], seeds[:4], options, batch_size=4)  # warm-up
    t0 = time.time()
    images = model.generate(labels, seeds, options, batch_size=a.batch_size)
    seconds = time.time() - t0
    row = {"model": tag, **options.to_dict(), "n": a.n, "seconds": round(seconds, 1),
           "ms_per_image": round(1000 * seconds / a.n, 2), "evaluations_per_image": evaluations_per_image(model,
                                                                                                          options),
           "load_average": load_average(), "scores": judges.score(images, labels)}
    print(score_line(f"{tag} ({options.describe()})", row["scores"],
                     f"; {row['evaluations_per_image']:g} evals/image; {row['ms_per_image']:.1f} ms/image"),
          flush=True)
    if a.grids:
        grid = class_grid(model.net, model.cfg, model.class_names, per_class=8, seed=0, options=options)
        atomic_save_image(Path(a.grids) / f"grid-{tag}.png", grid)
    return row


def table(rows: list[dict]) -> list[str]:
    judges = list(rows[0]["scores"])
    head = ["model", "sampler", "steps", "evals/image", "ms/image"] + [
        f"{j.removesuffix('.safetensors')} {m}" for j in judges for m in ("acc", "FD", "recall")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["sampler"], str(r["steps"]), f"{r['evaluations_per_image']:g}",
                 f"{r['ms_per_image']:.1f}"]
        cells += [v for j in judges for v in (f"{r['scores'][j]['accuracy']:.3f}", f"{r['scores'][j]['fd']:.2f}",
                                              f"{r['scores'][j]['recall']:.3f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="fashion_mnist-28-cpu")
    p.add_argument("--students", required=True, help="a `largo distill` run directory")
    p.add_argument("--steps", type=int, nargs="*", default=[8, 4, 2, 1], help="the students to measure")
    p.add_argument("--teacher-sampler", default="dpmpp2m")
    p.add_argument("--teacher-steps", type=int, default=20, help="0: do not measure the teacher (only the judges' "
                                                                   "reference comes from it)")
    p.add_argument("--baselines", nargs="*", default=["ddim:8", "ddim:4", "ddim:2", "ddim:1"],
                   help="the teacher at few steps too (SAMPLER:STEPS, guided at w): what distillation is up against")
    p.add_argument("--w", type=float, default=3.0)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--first-seed", type=int, default=10_000, help="image i uses seed FIRST+i (another value: a "
                   "second seed set, for the scores' spread; the grids keep their seeds)")
    p.add_argument("--classifiers", nargs="*", default=[], help="judges (default: the dataset's, both for FM)")
    p.add_argument("--grids", default="", help="folder for one class grid per model")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args()
    t0 = time.time()
    teacher = load_model(a.teacher)
    judges = Judges(teacher.cfg.data.dataset, teacher.cfg.data.resolution, a.classifiers)
    rows = [measure(f"teacher-{a.teacher_sampler}{a.teacher_steps}", teacher, SamplingOptions.resolve(
        teacher.cfg, sampler=a.teacher_sampler, steps=a.teacher_steps, cfg=a.w, precision="fp32"), judges, a)
            ] if a.teacher_steps else []
    for spec in a.baselines:
        sampler, steps = spec.split(":")
        rows.append(measure(f"teacher-{sampler}{steps}", teacher, SamplingOptions.resolve(
            teacher.cfg, sampler=sampler, steps=int(steps), cfg=a.w, precision="fp32"), judges, a))
    for steps in a.steps:
        student = load_model(a.students, steps=steps)
        record = student.meta.get("distill", {})
        if steps not in record.get("step_counts", [record.get("steps")]):  # a consistency student: several
            raise SystemExit(f"{a.students} has no {steps}-step student")
        rows.append(measure(f"student-{steps}", student, SamplingOptions.resolve(
            student.cfg, steps=steps, cfg=a.w, precision="fp32"), judges, a))
    record = {"teacher": a.teacher, "students": a.students, "args": vars(a), "machine": machine(),
              "distill": json.loads((Path(a.students) / "distill.json").read_text()),
              "seconds": round(time.time() - t0, 1), "rows": rows}
    seed_set = "" if a.first_seed == 10_000 else f"-s{a.first_seed}"
    atomic_write_json(Path(a.out) / f"distill-{Path(a.students).name}-n{a.n}{seed_set}.json", record)
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
