"""Training: the loop (`Trainer`), what it trains (`TrainTask`: `DiffusionTask`, `AutoencoderTask`), EMA,
exact-resume RNG state, run logs, and `train()` as one call."""

from largo.train.autoencoder_task import AutoencoderTask
from largo.train.diffusion_task import DiffusionTask
from largo.train.distill import DistillSettings, distill
from largo.train.distill_task import DistillTask
from largo.train.phema import post_hoc_ema
from largo.train.run import default_run_dir, new_run_config, resume_config, run_config, train
from largo.train.task import TrainTask
from largo.train.trainer import Trainer, make_task

__all__ = ["AutoencoderTask", "DiffusionTask", "DistillSettings", "DistillTask", "TrainTask", "Trainer",
           "default_run_dir", "distill", "make_task", "new_run_config", "post_hoc_ema", "resume_config", "run_config",
           "train"]
