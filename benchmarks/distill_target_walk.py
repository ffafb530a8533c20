"""What a perfect student would score: the first round's target walk of `largo distill`, sampled and judged.

A round's student (N DDIM steps) is fitted to its teacher's walk over each student interval (K substeps of the
teacher's solver, restarted in every interval: DistillTask.target). Walking all N intervals from pure noise with
that target gives the images a student that fits its target exactly would draw, so their scores split a student's
gap to the reference into the target's own error (this script) and the student's fit (distill_quality.py).

    python benchmarks/distill_target_walk.py --steps 4 --substeps 4 8 --n 500
    python benchmarks/distill_target_walk.py --steps 4 --substeps 4 --n 500 --student runs/fm-4

With --student (a `largo distill` run whose N-step student was fitted to this target), also where its fit is off:
per student interval, the RMS difference between the student's x0 and the target x̃ at the target walk's own
states (pixels in [-1, 1]), and the RMS difference between the student's final images and the walk's (same noise).

Scored like distill_quality.py (same seeds 10000+i, same judges, fp32, batch --batch-size); one JSON record under
--out with the machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import Judges, load_average, machine, score_line
from largo.diffusion.parameterization import to_x0
from largo.diffusion.samplers import ImageNoise
from largo.images import to_uint8
from largo.io import atomic_write_json
from largo.sampling import load_model
from largo.sampling.generate import image_shape
from largo.train.distill import DistillSettings, student_config
from largo.train.distill_task import DistillTask

OUT = Path("benchmarks/records/distill")


@torch.no_grad()
def target_walk(task: DistillTask, labels: torch.Tensor, seeds: list[int], w: float, shape: tuple,
                student: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """x_T = ε (seeded per image like `sample`), then per student interval i: the target x̃ and the student's DDIM
    step with it, which lands exactly where the teacher's substeps do (x̃ itself after the last interval).
    Returns the images, the student's squared x0 error per interval (summed over images; zeros without a student)
    and the student's own walk from the same noise (None without one)."""
    k, b = task.substeps, len(labels)
    w_b = torch.full((b,), w)

    def student_x0(x: torch.Tensor, i: int, a: torch.Tensor) -> torch.Tensor:
        pred = student(x.float(), task.timesteps[k * i].float().expand(b), labels, guidance=w_b).double()
        return to_x0(pred, task.cfg.diffusion.prediction, x, a.sqrt(), (1 - a).sqrt())

    x = own = ImageNoise(seeds, shape, "cpu").draw()
    sq_err = torch.zeros(task.steps, dtype=torch.float64)
    for i in range(task.steps):
        a, a_next = task.abar[k * i], task.abar[k * i + k]
        x0 = task.target(x, torch.full((b,), i), labels, w_b)
        if student is not None:
            sq_err[i] = (student_x0(x, i, a) - x0).square().flatten(1).mean(1).sum()
            own = task._ddim(own, student_x0(own, i, a), a, a_next)
        x = task._ddim(x, x0, a, a_next)  # x0 itself at the last interval (ᾱ = 1)
    return x.clamp(-1, 1), sq_err, own.clamp(-1, 1) if student is not None else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="fashion_mnist-28-cpu")
    p.add_argument("--steps", type=int, default=4, help="the student's steps")
    p.add_argument("--substeps", type=int, nargs="+", default=[4, 8], help="the teacher's substeps per step")
    p.add_argument("--solver", default="dpmpp2m", choices=("dpmpp2m", "ddim"))
    p.add_argument("--w", type=float, default=3.0)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--first-seed", type=int, default=10_000)
    p.add_argument("--student", default="", help="a distill run with an N-step student fitted to this target")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args()
    teacher = load_model(a.teacher)
    judges = Judges(teacher.cfg.data.dataset, teacher.cfg.data.resolution, [])
    labels = torch.arange(a.n) % teacher.cfg.model.num_classes
    seeds = [a.first_seed + i for i in range(a.n)]
    student = load_model(a.student, steps=a.steps).net if a.student else None
    rows = []
    for k in a.substeps:
        settings = DistillSettings(a.steps, a.steps, (a.w, a.w), iters_per_round=1)
        scfg = student_config(teacher.cfg, settings, a.steps, "cpu", "fp32")
        task = DistillTask(scfg, torch.device("cpu"), teacher.net, teacher.cfg.sample.clip_x0, (a.w, a.w), {},
                           solver=a.solver, substeps=k)
        t0 = time.time()
        parts = [target_walk(task, labels[lo:lo + a.batch_size], seeds[lo:lo + a.batch_size], a.w,
                             image_shape(teacher.cfg), student) for lo in range(0, a.n, a.batch_size)]
        images = torch.cat([to_uint8(walk) for walk, _, _ in parts])
        seconds = time.time() - t0
        row = {"model": f"target-{a.solver}x{k}", "steps": a.steps, "substeps": k, "solver": a.solver, "n": a.n,
               "evaluations_per_image": 2 * k * a.steps, "ms_per_image": round(1000 * seconds / a.n, 2),
               "load_average": load_average(), "scores": judges.score(images, labels)}
        print(score_line(f"{a.steps}-step target walk, {a.solver} ×{k}", row["scores"],
                         f"; {row['evaluations_per_image']} evals/image"), flush=True)
        if student is not None:
            rms = (sum(err for _, err, _ in parts) / a.n).sqrt()
            drift = torch.cat([(own - walk).square().flatten(1).mean(1) for walk, _, own in parts]).mean().sqrt()
            row["student"] = {"run": a.student, "x0_rms_per_interval": [round(float(v), 4) for v in rms],
                              "final_image_rms": round(float(drift), 4)}
            print(f"  student {a.student}: x0 RMS error per interval {row['student']['x0_rms_per_interval']}, "
                  f"final images RMS {row['student']['final_image_rms']} (pixels in [-1, 1])", flush=True)
        rows.append(row)
    seed_set = "" if a.first_seed == 10_000 else f"-s{a.first_seed}"
    of = f"-{Path(a.student).name}" if a.student else ""
    atomic_write_json(Path(a.out) / f"target-walk-{a.steps}steps{of}-n{a.n}{seed_set}.json",
                      {"teacher": a.teacher, "args": vars(a), "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
