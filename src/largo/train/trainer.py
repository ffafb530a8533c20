"""The training loop of every task: data stream → the task's loss → AdamW → EMA, with checkpoints that resume
exactly, logs, sample grids, a time budget and clean stops on SIGTERM/SIGINT (also under torchrun).

The caller may hand `Trainer` its data (`data=`, an `ImageSet`: default, the config's dataset) and its task
(`task=`, a `TrainTask`: default, the diffusion or autoencoder task the config names), as NVlabs/edm's training
loop takes its dataset and network from the caller. Everything random (data order, flips, timesteps, noise, label
dropout, dropout) comes from generators whose state is saved with each checkpoint, so on the CPU a run that is
killed and resumed ends with the same weights, bit for bit, as one that never stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from largo.checkpoint import (latest_checkpoint, load_state, load_weights, read_meta, save_best, save_checkpoint,
                              write_config)
from largo.config import AutoencoderRunConfig, RunConfig
from largo.data import BatchStream, ImageSet, load_images, long_tailed, random_subset
from largo.errors import LargoError
from largo.io import atomic_save_image, atomic_write_text
from largo.models import count_parameters
from largo.runtime import autocast, check_compile, peak_memory_mb, resolve_device, resolve_precision
from largo.runtime.distributed import all_reduce_mean, barrier, init_distributed, local_device, shutdown
from largo.train.autoencoder_task import AutoencoderTask
from largo.train.diffusion_task import DiffusionTask
from largo.train.ema import EMA
from largo.train.finetune import init_from
from largo.train.monitor import TrainingEval
from largo.train.phema import PowerEMA
from largo.train.rng import rng_state, set_rng_state
from largo.train.schedule import LRSchedule
from largo.train.runlog import RunLog, log_step
from largo.train.task import TrainTask


# -- the loop ----------------------------------------------------------------------------------------
def make_task(cfg: RunConfig | AutoencoderRunConfig, device: torch.device) -> TrainTask:
    """The task a config trains: a diffusion model (`RunConfig`) or an autoencoder (`AutoencoderRunConfig`)."""
    if isinstance(cfg, AutoencoderRunConfig):
        return AutoencoderTask(cfg, device)
    return DiffusionTask(cfg, device)


class Trainer:
    """One loop for every task: data stream → the task's loss → AdamW → EMA, checkpoints, logs, resume."""

    def __init__(self, cfg: RunConfig | AutoencoderRunConfig, run_dir: Path, resume: bool = False,
                 progress: bool = True, *, data: ImageSet | None = None, task: TrainTask | None = None):
        """`data`: the training images (default: the config's dataset, split, imbalance and subset). `task`: what
        to train, built on this same `cfg` (default: `make_task(cfg, device)`)."""
        self.run_dir = Path(run_dir)
        self.progress = progress
        t, d = cfg.train, cfg.data
        self.dist = init_distributed(resolve_device(t.device))
        self.device = local_device(resolve_device(t.device), self.dist)
        if t.batch_size % self.dist.world:
            raise LargoError(f"batch_size {t.batch_size} is not divisible by the {self.dist.world} processes "
                             f"(batch_size is the global batch)")
        self.amp_dtype = resolve_precision(t.precision, self.device)
        cfg.validate()  # before the data is loaded: a bad value costs nothing
        if data is None:
            data = load_images(d.dataset, "train", d.resolution, d.data_root, download=d.download,
                               bad_images=d.bad_images, split_seed=d.split_seed)
            data = random_subset(long_tailed(data, d.imbalance, seed=d.split_seed), d.subset, seed=d.split_seed)
        self.class_names = data.class_names
        self.task = task if task is not None else make_task(cfg, self.device)
        train_set, flipped = self.task.prepare(data)  # fills what the network sees into cfg
        self.cfg = cfg.validate()
        torch.manual_seed(t.seed)
        random.seed(t.seed)
        np.random.seed(t.seed)
        self.net = self.task.build_net().to(self.device)
        if t.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ema = EMA(self.net, t.ema_decay, t.ema_warmup, t.ema_power)
        # fine-tuning: the source's weights and EMA, its class-embedding rows remapped to this dataset's classes
        self.init_event = init_event = (init_from(self.net, self.ema.net, cfg, self.class_names)
                                        if t.init_from and not resume else None)
        self.phema = PowerEMA(self.net) if t.phema_every else None
        self.evaluator = (TrainingEval(cfg, data, self.device, getattr(self.task, "latent", None),
                                       progress=progress)
                          if t.eval_every and self.dist.is_main else None)
        self.t_start, self.elapsed_before = time.time(), 0.0  # seconds the run trained (and evaluated) before this process, for the eval log
        fused = self.device.type == "cuda"
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=t.lr, betas=(0.9, 0.999),
                                     weight_decay=t.weight_decay, fused=fused, foreach=None if fused else True)
        self.task.setup(self.net, fused)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.stream = BatchStream(train_set, t.batch_size, balanced=d.balanced, hflip=d.hflip, seed=t.seed,
                                  device=self.device, shard=self.dist.shard, flipped=flipped)
        self.step = 0
        self.bad_steps_total = 0
        self.schedule = LRSchedule(t.lr, t.lr_warmup, t.lr_schedule, self.total_steps)
        self.train_net = self._wrap(self.net)
        self.model_fn = torch.compile(self.train_net) if t.compile else self.train_net
        self.stop_requested = False
        self._saved: tuple[int, Path] | None = None  # (step, folder) of this process's last checkpoint
        if resume:
            self._resume()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.run_dir, cfg)
            events = [{"step": 0, **self.task.cache_event}] if self.task.cache_event else []
            if not resume and (events or init_event):
                with open(self.run_dir / "log.jsonl", "a") as f:
                    f.writelines(json.dumps(e) + "\n" for e in events + ([init_event] if init_event else []))

    def _wrap(self, net: torch.nn.Module) -> torch.nn.Module:
        if self.cfg.train.compile:
            check_compile(self.device)
        if not self.dist.enabled:
            return net
        return DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    @property
    def total_steps(self) -> int:
        t = self.cfg.train
        if t.epochs > 0:
            return math.ceil(t.epochs * len(self.stream) / (t.batch_size * t.grad_accum))
        return t.steps

    def lr_at(self, step: int) -> float:
        return self.schedule.lr_at(step)

    # -- checkpoints ---------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"step": self.step, "optimizer": self.opt.state_dict(), "ema_updates": self.ema.updates,
                "stream": self.stream.state_dict(), "rng": rng_state(), "bad_steps_total": self.bad_steps_total,
                "scaler": self.scaler.state_dict() if self.scaler else None, "task": self.task.state_dict(),
                "lr_horizon": self.schedule.horizon, "elapsed_s": self.elapsed_before + time.time() - self.t_start,
                **({"phema": self.phema.state_dict()} if self.phema else {}),
                **({"best": self.evaluator.best} if self.evaluator and self.evaluator.best else {})}

    def save(self) -> Path | None:
        if not self.dist.is_main:
            return None
        path = save_checkpoint(self.run_dir, self.step, self.net, self.ema.net, self._state(), self.cfg,
                               self.cfg.train.keep, self.class_names, self.task.meta())
        self._saved = (self.step, path)
        return path

    def _resume(self) -> None:
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            raise LargoError(f"nothing to resume: {self.run_dir} has no complete checkpoint")
        meta = read_meta(ckpt)
        if meta.get("kind", "diffusion") != self.task.kind:
            raise LargoError(f"cannot resume {self.run_dir}: it holds a {meta.get('kind', 'diffusion')} run, not an "
                             f"{self.task.kind} run")
        saved = type(self.cfg).from_dict(meta["config"])
        if self.task.architecture(saved) != self.task.architecture(self.cfg):
            raise LargoError(f"cannot resume {self.run_dir}: the model config differs from the checkpoint's")
        self.task.check_resume(meta)
        load_weights(self.net, ckpt / "model.safetensors")
        load_weights(self.ema.net, ckpt / "ema.safetensors")
        state = load_state(ckpt)
        try:
            self.opt.load_state_dict(state["optimizer"])
            self.stream.load_state_dict(state["stream"])
            set_rng_state(state["rng"])
            if self.scaler and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.step = int(state["step"])
            self.schedule.horizon = int(state.get("lr_horizon", self.total_steps))
            self.ema.updates = int(state["ema_updates"])
            self.bad_steps_total = int(state.get("bad_steps_total", 0))
            self.task.load_state_dict(state.get("task"))
            if self.phema:
                self.phema.load_state_dict(state.get("phema"))
            if self.evaluator:
                self.evaluator.best = state.get("best")
            self.elapsed_before = float(state.get("elapsed_s", 0.0))
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise LargoError(f"training state in {ckpt} does not match this run ({type(e).__name__}: {e})") from None
        self._truncate_log(self.step)

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from, so curves have no repeated steps."""
        log = self.run_dir / "log.jsonl"
        if log.exists() and self.dist.is_main:
            lines = [ln for ln in log.read_text().splitlines() if ln.strip() and log_step(ln) <= step]
            atomic_write_text(log, "".join(ln + "\n" for ln in lines))

    # -- one optimizer step --------------------------------------------------------------------------
    def train_step(self, stop: bool = False) -> tuple[float, float, bool]:
        """One optimizer step over `grad_accum` micro-batches. Returns (loss, grad_norm, stop), where loss or
        grad_norm is not finite when the step was skipped, and stop says whether any process asked to stop."""
        t = self.cfg.train
        self.net.train()
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(t.grad_accum):
            x, y = self.stream.next()
            if t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            # DDP all-reduces gradients only on the last micro-batch.
            sync = self.dist.enabled and micro < t.grad_accum - 1
            with (self.train_net.no_sync() if sync else contextlib.nullcontext()):
                with autocast(self.device, self.amp_dtype):
                    loss = self.task.loss(self.model_fn, self.net, x, y, self.step, self.dist.shard) / t.grad_accum
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.detach().float()
        if self.scaler:
            self.scaler.unscale_(self.opt)
        max_norm = t.grad_clip if t.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), max_norm)
        # One host sync per step; with DDP the same all-reduce averages the loss and agrees on stopping.
        stats = torch.stack([total, norm.float(), torch.tensor(float(stop), device=self.device)])
        loss_value, norm_value, stop_value = all_reduce_mean(stats, self.dist).tolist()
        stop = stop_value > 0
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            self.opt.zero_grad(set_to_none=True)
            if self.scaler:
                self.scaler.update()
            return loss_value, norm_value, stop
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.ema.update(self.net)
        if self.phema:
            self.phema.update(self.net, self.step + 1)
        self.task.after_step(self.step, self.dist)
        self.step += 1
        return loss_value, norm_value, stop

    # -- the run -------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until the step count, the time budget or a signal stops the run; checkpoint and draw a grid."""
        t = self.cfg.train
        start_time = self.t_start = time.time()
        deadline = start_time + 60 * t.max_minutes if t.max_minutes > 0 else math.inf
        log = RunLog(self.run_dir, self.dist.is_main, self.progress, self.total_steps, self.step, deadline,
                     t.batch_size * t.grad_accum, t.eval_every)
        handlers = _install_signal_handlers(self)
        self.schedule.start_budget(self.step, deadline)
        try:
            stop_reason = self._loop(log, deadline)
        finally:
            log.close_stream()
            _restore_signal_handlers(handlers)
        # a run that ends on a checkpoint step has just written it: nothing changed since, so it is not written twice
        ckpt = self._saved[1] if self._saved and self._saved[0] == self.step else self.save()
        self._periodic(log, final=True)
        grid = self.sample_grid(log.writer) if self.dist.is_main else None
        log.close()
        barrier(self.dist)  # the other ranks wait for rank 0's checkpoint and grid (30-min timeout)
        shutdown(self.dist)
        return {"step": self.step, "stop_reason": stop_reason, "checkpoint": str(ckpt), "grid": str(grid),
                "minutes": (time.time() - start_time) / 60, "bad_steps": self.bad_steps_total,
                "parameters": count_parameters(self.net), "rank": self.dist.rank}

    def _loop(self, log: RunLog, deadline: float) -> str:
        """The steps of `fit`; returns why they stopped ("steps", "time budget" or "signal")."""
        t, total = self.cfg.train, self.total_steps
        consecutive_bad = 0
        while self.step < total:
            out_of_time = time.time() >= deadline
            loss, grad_norm, stop = self.train_step(stop=self.stop_requested or out_of_time)
            self.schedule.observe(self.step)
            if math.isfinite(loss) and math.isfinite(grad_norm):
                consecutive_bad = 0
                log.good_step(loss)
            else:
                consecutive_bad += 1
                self.bad_steps_total += 1
                log.event({"step": self.step, "event": "skipped non-finite step", "consecutive": consecutive_bad})
                if consecutive_bad >= t.max_bad_steps:
                    raise LargoError(f"stopped: {consecutive_bad} consecutive steps had a non-finite loss or "
                                     f"gradient (lower --lr?); the last good checkpoint is kept in "
                                     f"{self.run_dir / 'checkpoints'}")
            if self.step % t.log_every == 0 or self.step == total or stop:
                log.window_record(self.step, epoch=round(self.stream.epoch_fraction, 4),
                                  lr=self.lr_at(self.step - 1), grad_norm=grad_norm,
                                  peak_mem_mb=round(peak_memory_mb(self.device), 1),
                                  ema_decay=self.ema.current_decay(), lr_horizon=self.schedule.horizon,
                                  **self.task.logs)
            if stop:
                return "time budget" if out_of_time and not self.stop_requested else "signal"
            if self.step % t.checkpoint_every == 0:
                self.save()
            self._periodic(log)
            if t.sample_every and self.step % t.sample_every == 0 and self.dist.is_main:
                self.sample_grid(log.writer)
        return "steps"

    def _periodic(self, log: RunLog, final: bool = False) -> None:
        """Post-hoc EMA snapshots and in-training evaluations, every `phema_every` / `eval_every` steps, and once
        more at the end of the run when its last step is not one of those."""
        t = self.cfg.train
        if self.phema and self.dist.is_main and self.step and (self.step % t.phema_every == 0 or final):
            self.phema.snapshot(self.run_dir, self.step)
        if self.evaluator and self.step and (self.step % t.eval_every == 0 or final) and \
                self.evaluator.last_step != self.step:
            self.evaluate(log)

    def evaluate(self, log: RunLog) -> dict:
        """Score the EMA network (train/monitor.py), log it, and keep checkpoints/best when it is the best yet."""
        record = self.evaluator(self.ema.net, self.step)
        record["minutes"] = round((self.elapsed_before + time.time() - self.t_start) / 60, 3)
        log.evaluation(record)
        if self.evaluator.improved(record):
            save_best(self.run_dir, self.step, self.net, self.ema.net, self._state(), self.cfg, self.class_names,
                      {**self.task.meta(), "best": self.evaluator.best, "eval": record})
        return record

    def sample_grid(self, writer: Any = None) -> Path:
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        image = self.task.grid(self.ema.net, self.class_names)
        atomic_save_image(path, image)
        if writer:
            writer.add_image("samples", np.asarray(image.convert("RGB")), self.step, dataformats="HWC")
        return path


def _install_signal_handlers(trainer: Trainer) -> dict[int, Any]:
    """SIGTERM/SIGINT finish the current step, write a checkpoint and exit cleanly."""
    def request_stop(signum: int, frame: Any) -> None:
        trainer.stop_requested = True

    old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            old[sig] = signal.signal(sig, request_stop)
        except ValueError:  # not the main thread
            pass
    return old


def _restore_signal_handlers(old: dict[int, Any]) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)
