"""Training: the loop (`Trainer`), EMA, exact-resume RNG state, run logs, and `train()` as one call."""

from largo.train.run import default_run_dir, new_run_config, resume_config, run_config, train
from largo.train.trainer import Trainer

__all__ = ["Trainer", "default_run_dir", "new_run_config", "resume_config", "run_config", "train"]
