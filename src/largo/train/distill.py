"""`largo distill` as one call: a guided teacher in, few-step students out (train/distill_task.py says how).

Layout of OUT (an ordinary run directory: `largo sample/eval/serve OUT` use its fewest-step student so far):
    distill.json             teacher, guidance range, the plan, each finished round's run and CPU minutes
    teacher_samples.pt       the teacher's own samples (x0 in the space the network sees) and labels: the data
                             (not there with `data=True`: the students train on the teacher's training images)
    rounds/steps-N/          round N's run directory (config.json, checkpoints/, log.jsonl, samples/): resumable
    config.json, checkpoints/   the latest finished round's student (its config samples with ddim at N steps)
Running the same command again continues an interrupted distillation (the round in progress resumes bit-exactly
from its last checkpoint, finished rounds are kept).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from largo.checkpoint import latest_checkpoint, save_checkpoint, write_config
from largo.config import RunConfig
from largo.data import ImageSet
from largo.diffusion.samplers import sample
from largo.errors import LargoError
from largo.io import atomic_write, atomic_write_json, read_json
from largo.runtime import resolve_device
from largo.sampling import SamplingOptions
from largo.sampling.generate import image_shape, make_denoiser
from largo.sampling.guide import load_network
from largo.sampling.model import DISTILL_RECORD
from largo.train.consistency_task import ConsistencyTask
from largo.train.distill_task import SUPPORTED_PREDICTIONS, TEACHER_SOLVERS, DistillTask
from largo.train.trainer import Trainer

POOL_FILE = "teacher_samples.pt"
POOL_SEED = 50_000_000  # the teacher's samples use seeds POOL_SEED + i (evaluations use small seeds)


@dataclasses.dataclass
class DistillSettings:
    steps: int  # the first round's student steps (its teacher walks twice as many)
    to: int  # the last round's (halving each round)
    cfg_range: tuple[float, float] | None  # w of the teacher's target, the student's input (None: the teacher's cfg)
    iters_per_round: int = 0  # optimizer steps per round (0: only the time budget)
    minutes_per_round: float = 0.0  # wall-clock budget per round (0: none)
    batch_size: int = 32
    lr: float = 1e-4
    pool: int = 1000  # teacher samples to distill on
    pool_steps: int = 0  # the teacher's sampler steps for them (0: its sample config's)
    seed: int = 0
    # the first round's teacher integrates each student interval with this many substeps of this solver (later
    # rounds: two DDIM steps of the previous student, progressive distillation's target); ddim with 2 substeps is
    # the original algorithm's first round too
    teacher_solver: str = "dpmpp2m"
    teacher_substeps: int = 4
    pool_from: str = ""  # an existing teacher_samples.pt to reuse (same teacher, w and pool size) instead of sampling
    # "progressive" (rounds halving the steps) or "consistency" (Song et al. 2023: one network, trained once, for
    # every step count of the plan, on a cd_grid-point grid with an EMA target network of decay cd_target_decay;
    # iters_per_round / minutes_per_round are its whole budget)
    method: str = "progressive"
    cd_grid: int = 32
    cd_target_decay: float = 0.95
    # x0 from the teacher's own training images (its config's dataset, train split) instead of its samples: no pool
    # to sample, the dataset's variety instead of `pool` images (Salimans & Ho and Meng et al. distil on data)
    data: bool = False
    data_root: str = ""  # where that dataset is (default: the teacher config's, else ../shared/data)
    # the student's channels, a multiple of the teacher's: a wider student starts as the teacher's function
    # (models/widen.py) with more capacity to fit the few-step map
    width: int = 1
    # each teacher target trains the student this many times on average (a bank of targets, DistillTask): the
    # teacher's guided substeps are about three quarters of a step's cost, so R > 1 buys more steps per minute
    reuse: int = 1

    def check(self) -> None:
        for name, n in (("--steps", self.steps), ("--to", self.to)):
            if n < 1 or n & (n - 1):
                raise LargoError(f"{name} must be a power of two (1, 2, 4, 8, …), got {n}")
        if self.to > self.steps:
            raise LargoError(f"--to {self.to} is more steps than --steps {self.steps}; rounds halve the steps")
        if self.iters_per_round <= 0 and self.minutes_per_round <= 0:
            raise LargoError("give --iters-per-round or --minutes-per-round (how long each round trains)")
        if self.batch_size < 1 or self.pool < self.batch_size or not self.lr > 0:
            raise LargoError(f"need batch size >= 1, --pool >= batch size and lr > 0 (got {self.batch_size}, "
                             f"{self.pool}, {self.lr:g})")
        if self.teacher_solver not in TEACHER_SOLVERS or self.teacher_substeps < 1:
            raise LargoError(f"--teacher-solver must be one of {', '.join(TEACHER_SOLVERS)} and --teacher-substeps "
                             f">= 1, got {self.teacher_solver} and {self.teacher_substeps}")
        if self.method not in ("progressive", "consistency"):
            raise LargoError(f"--method must be progressive or consistency, got {self.method}")
        if self.method == "consistency" and (self.cd_grid % self.steps or not 0 <= self.cd_target_decay < 1):
            raise LargoError(f"--cd-grid must be a multiple of --steps and --cd-target-decay in [0, 1), got "
                             f"{self.cd_grid} and {self.cd_target_decay:g}")
        if self.data and self.pool_from:
            raise LargoError("--data trains on the teacher's dataset, --pool-from on its samples: give one of them")
        if not 1 <= self.width <= 4:
            raise LargoError(f"--width is the student's channels as a multiple of the teacher's: 1 to 4, got "
                             f"{self.width}")
        if not 1 <= self.reuse <= 32 or self.batch_size % self.reuse:
            raise LargoError(f"--reuse must be 1 to 32 and divide the batch size {self.batch_size}, got {self.reuse}")
        if self.reuse > 1 and self.method == "consistency":
            raise LargoError("--reuse banks a frozen teacher's targets; consistency distillation's target network "
                             "moves, so it takes no --reuse")
        if self.data_root and not self.data:
            raise LargoError("--data-root is where --data finds the teacher's dataset; add --data or drop it")
        if self.cfg_range is not None:  # None: distill() puts in the teacher's sample cfg, then checks again
            lo, hi = self.cfg_range
            if not (math.isfinite(lo) and math.isfinite(hi) and 1 <= lo <= hi <= 20):
                raise LargoError(f"the guidance range must satisfy 1 <= LO <= HI <= 20, got {lo:g},{hi:g}")

    @property
    def plan(self) -> list[int]:
        return [self.steps >> k for k in range(int(math.log2(self.steps // self.to)) + 1)]


def _check_teacher(cfg: RunConfig, meta: dict, source: str) -> None:
    if meta.get("latent"):
        raise LargoError(f"{source} is a latent model; distillation supports pixel models for now")
    if cfg.diffusion.prediction not in SUPPORTED_PREDICTIONS:
        raise LargoError(f"{source} predicts {cfg.diffusion.prediction}; distillation needs an eps, x0 or v model")
    if cfg.model.num_classes == 0:
        raise LargoError(f"{source} is unconditional; guided distillation needs a class-conditional teacher")
    if cfg.model.guidance_input:
        raise LargoError(f"{source} is already a distilled student; distill its teacher with a smaller --to")


# what a record written before these settings existed means
LEGACY = {"teacher_solver": "ddim", "teacher_substeps": 2, "method": "progressive", "data": False, "width": 1,
          "reuse": 1}


def _extends(old: dict, record: dict) -> bool:
    """Whether `record` is `old`'s progressive distillation with more halving rounds (its plan starts with old's)."""
    plan, new = old.get("plan") or [], record.get("plan") or []
    return (old.get("method") == record.get("method") == "progressive" and len(new) > len(plan)
            and new[:len(plan)] == plan and all(old.get(k) == v for k, v in record.items() if k != "plan"))


def _open_out(out: Path, record: dict) -> dict:
    """The distillation record of OUT: a new one, or the existing one when the same distillation continues."""
    path = out / DISTILL_RECORD
    if path.is_file():
        old = {**LEGACY, **read_json(path, "distillation record")}
        if _extends(old, record):  # a smaller --to continues the same halving rounds: finished rounds are kept
            old["plan"] = record["plan"]
        if {k: old.get(k) for k in record} != record:
            raise LargoError(f"{out} holds another distillation ({old.get('teacher')}, steps {old.get('plan')}); "
                             f"choose another --out or repeat its settings to continue it")
        return old
    if out.exists() and any(out.iterdir()):
        raise LargoError(f"{out} exists and is not a distillation run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return {**record, "rounds": {}, "minutes": {}}


def _reuse_pool(source: Path, path: Path, n: int, num_classes: int, log: Callable[[str], Any]) -> None:
    """Copy another distillation's teacher_samples.pt (`--pool-from`) after checking its size and labels."""
    if source.is_dir():
        source = source / POOL_FILE
    if not source.is_file():
        raise LargoError(f"--pool-from {source}: no such file")
    pool = torch.load(source, weights_only=True)
    if not isinstance(pool, dict) or set(pool) != {"x0", "labels"} or len(pool["x0"]) != n or not torch.equal(
            pool["labels"], torch.arange(n) % num_classes):
        raise LargoError(f"--pool-from {source} is not a pool of {n} teacher samples of {num_classes} classes")
    atomic_write(path, lambda tmp: torch.save(pool, tmp))
    log(f"{n} teacher samples reused from {source} → {path}")


def teacher_pool(out: Path, net: torch.nn.Module, cfg: RunConfig, n: int, steps: int, w: float,
                 device: torch.device, log: Callable[[str], Any], pool_from: str = "") -> tuple[torch.Tensor,
                                                                                                torch.Tensor]:
    """The teacher's own samples (its default sampler and steps, guidance w), cached in OUT (or copied from
    `pool_from`, a pool the same teacher sampled with the same settings: the caller's responsibility)."""
    path = out / POOL_FILE
    if not path.is_file() and pool_from:
        _reuse_pool(Path(pool_from), path, n, cfg.model.num_classes, log)
    if not path.is_file():
        start = time.time()
        options = SamplingOptions.resolve(cfg, cfg=w, clip_x0=True, steps=steps or None)
        denoiser = make_denoiser(net, cfg, options)
        labels = torch.arange(n) % cfg.model.num_classes
        chunks = []
        for lo in range(0, n, 64):
            y = labels[lo:lo + 64]
            chunks.append(sample(denoiser, (len(y), *image_shape(cfg)), y.to(device), sampler=options.sampler,
                                 steps=options.steps, spacing=options.spacing, eta=options.eta, clip_x0=True,
                                 seeds=[POOL_SEED + lo + i for i in range(len(y))], device=device).cpu())
        pool = {"x0": torch.cat(chunks).clamp(-1, 1), "labels": labels}
        atomic_write(path, lambda tmp: torch.save(pool, tmp))
        log(f"{n} teacher samples ({options.describe()}) in {(time.time() - start) / 60:.1f} min → {path}")
    pool = torch.load(path, weights_only=True)
    return pool["x0"], pool["labels"]


def student_config(teacher: RunConfig, s: DistillSettings, steps: int, device: str, precision: str) -> RunConfig:
    lo, hi = s.cfg_range
    t = dataclasses.replace(
        teacher.train, steps=s.iters_per_round or 10**9, epochs=0, max_minutes=s.minutes_per_round,
        batch_size=s.batch_size, grad_accum=1, lr=s.lr, lr_warmup=0, lr_schedule="constant", ema_decay=0.995,
        ema_warmup=True, ema_power=0.0, seed=s.seed, device=device, precision=precision, compile=False,
        log_every=10, sample_every=0, checkpoint_every=max(1, min(100, s.iters_per_round or 100)), keep=2,
        init_from="", eval_every=0, phema_every=0, channels_last=False)
    data = dataclasses.replace(teacher.data, hflip=False, augment=0.0,
                               data_root=s.data_root or teacher.data.data_root)
    return dataclasses.replace(
        teacher, preset="", train=t, data=data,
        model=dataclasses.replace(teacher.model, guidance_input=True,
                                  base_channels=teacher.model.base_channels * s.width),
        sample=dataclasses.replace(teacher.sample, sampler="ddim", sample_steps=steps, eta=0.0, spacing="trailing",
                                   cfg=hi if lo == hi else teacher.sample.cfg, clip_x0=False))


# long function: the rounds, their resume and their records in one place; the work is in the Trainer and the task
def distill(teacher: str | Path, out: str | Path, settings: DistillSettings, *, device: str = "auto",
            precision: str = "auto", progress: bool = True, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Distill `teacher` (a released name, a run or a checkpoint) into students of settings.plan steps under
    `out`; continue the same distillation when `out` holds it. Returns {"out", "rounds", "stop_reason"}."""
    settings.check()
    out = Path(out)
    dev = resolve_device(device)
    net, tcfg, _, tmeta = load_network(teacher, dev)
    _check_teacher(tcfg, tmeta, str(teacher))
    if settings.cfg_range is None:  # the teacher's own guidance scale
        settings = dataclasses.replace(settings, cfg_range=(tcfg.sample.cfg, tcfg.sample.cfg))
        settings.check()
    lo, hi = settings.cfg_range
    record = {"teacher": str(teacher), "teacher_step": int(tmeta.get("step", 0)), "plan": settings.plan,
              "cfg_range": [lo, hi], "pool": settings.pool, "pool_steps": settings.pool_steps,
              "iters_per_round": settings.iters_per_round, "minutes_per_round": settings.minutes_per_round,
              "batch_size": settings.batch_size, "lr": settings.lr, "teacher_solver": settings.teacher_solver,
              "teacher_substeps": settings.teacher_substeps, "method": settings.method, "data": settings.data,
              "width": settings.width, "reuse": settings.reuse}
    if settings.method == "consistency":  # its teacher takes one DDIM step on the CD grid
        record.update(teacher_solver="ddim", teacher_substeps=1, cd_grid=settings.cd_grid,
                      cd_target_decay=settings.cd_target_decay)
    state = _open_out(out, record)
    atomic_write_json(out / DISTILL_RECORD, state)
    if settings.pool_from and not (out / POOL_FILE).is_file():
        state["pool_from"] = str(settings.pool_from)
        atomic_write_json(out / DISTILL_RECORD, state)
    class_names = tmeta.get("class_names") or [str(i) for i in range(tcfg.model.num_classes)]
    data = None  # with settings.data the Trainer loads the teacher's dataset from the student's config
    if not settings.data:
        pool_w = hi if lo == hi else tcfg.sample.cfg
        x0, labels = teacher_pool(out, net, tcfg, settings.pool, settings.pool_steps, pool_w, dev, log,
                                  settings.pool_from)
        data = ImageSet(x0, labels, class_names)
    source = tcfg.data.dataset if settings.data else POOL_FILE  # what x0 is drawn from, in each round's meta
    clip, summary = tcfg.sample.clip_x0, {"out": str(out), "rounds": {}, "stop_reason": "done"}
    if settings.method == "consistency":
        return _consistency(out, settings, state, tcfg, net, data, str(teacher), device, dev, precision, progress,
                            log, class_names, source)
    teacher_name, total_iters = str(teacher), 0
    solver, substeps = settings.teacher_solver, settings.teacher_substeps  # the first round's; then ddim, 2
    for steps in settings.plan:
        run_dir = out / "rounds" / f"steps-{steps}"
        scfg = student_config(tcfg, settings, steps, device, precision)
        info = {"teacher": teacher_name, "teacher_steps": substeps * steps, "teacher_solver": solver,
                "teacher_substeps": substeps, "steps": steps, "cfg_range": [lo, hi], "origin": str(teacher),
                "x0_from": source}
        task = DistillTask(scfg, dev, net, clip, (lo, hi), info, solver=solver, substeps=substeps,
                           reuse=settings.reuse)
        trainer = Trainer(scfg, run_dir, resume=latest_checkpoint(run_dir) is not None, progress=progress,
                          data=data, task=task)
        if str(steps) not in state["rounds"]:
            log(f"round {steps} steps (teacher: {teacher_name}, {solver} at {substeps * steps} steps, {substeps} "
                f"per student step, w in [{lo:g}, {hi:g}]) from step {trainer.step}; run: {run_dir}")
            result = trainer.fit()
            if result["stop_reason"] == "signal":
                return {**summary, "stop_reason": "signal"}
            state["rounds"][str(steps)] = str(run_dir.relative_to(out))
            state["minutes"][str(steps)] = round(trainer.elapsed_before / 60 + result["minutes"], 3)
            state["iters"] = {**state.get("iters", {}), str(steps): trainer.step}
            total_iters += trainer.step
            save_checkpoint(out, total_iters, trainer.net, trainer.ema.net, trainer._state(), scfg, 1, class_names,
                            task.meta())
            write_config(out, scfg)
            atomic_write_json(out / DISTILL_RECORD, state)
        else:
            total_iters += trainer.step
        summary["rounds"][steps] = {"minutes": state["minutes"][str(steps)], "run": str(run_dir)}
        net = trainer.ema.net.eval()
        teacher_name, clip = f"{out.name}/rounds/steps-{steps}", False
        solver, substeps = "ddim", 2
    return summary


def _consistency(out: Path, s: DistillSettings, state: dict, tcfg: RunConfig, net: torch.nn.Module,
                 data: ImageSet | None, teacher: str, device: str, dev: torch.device, precision: str, progress: bool,
                 log: Callable[[str], Any], class_names: list[str], source: str) -> dict[str, Any]:
    """One consistency-distillation run (train/consistency_task.py) serving every step count of the plan."""
    lo, hi = s.cfg_range
    run_dir = out / "rounds" / "consistency"
    scfg = student_config(tcfg, s, s.to, device, precision)
    info = {"method": "consistency", "teacher": teacher, "teacher_steps": s.cd_grid, "steps": s.to,
            "step_counts": s.plan, "cd_grid": s.cd_grid, "cd_target_decay": s.cd_target_decay,
            "cfg_range": [lo, hi], "origin": teacher, "x0_from": source}
    task = ConsistencyTask(scfg, dev, net, tcfg.sample.clip_x0, (lo, hi), info, grid_steps=s.cd_grid,
                           target_decay=s.cd_target_decay, step_counts=tuple(s.plan))
    trainer = Trainer(scfg, run_dir, resume=latest_checkpoint(run_dir) is not None, progress=progress, data=data,
                      task=task)
    summary = {"out": str(out), "rounds": {}, "stop_reason": "done"}
    if not state["rounds"]:
        log(f"consistency distillation for {s.plan} steps (teacher: {teacher}, one DDIM step on a {s.cd_grid}-point "
            f"grid, target EMA {s.cd_target_decay:g}, w in [{lo:g}, {hi:g}]) from step {trainer.step}; run: {run_dir}")
        result = trainer.fit()
        if result["stop_reason"] == "signal":
            return {**summary, "stop_reason": "signal"}
        minutes = round(trainer.elapsed_before / 60 + result["minutes"], 3)
        state["rounds"] = {str(n): str(run_dir.relative_to(out)) for n in s.plan}
        state["minutes"] = {"consistency": minutes}
        state["iters"] = {"consistency": trainer.step}
        save_checkpoint(out, trainer.step, trainer.net, trainer.ema.net, trainer._state(), scfg, 1, class_names,
                        task.meta())
        write_config(out, scfg)
        atomic_write_json(out / DISTILL_RECORD, state)
    summary["rounds"] = {n: {"minutes": state["minutes"]["consistency"], "run": str(run_dir)} for n in s.plan}
    return summary
