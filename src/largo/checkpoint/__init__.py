"""Checkpoints that never run code: the run-directory layout, safe loading, and released checkpoints by name."""

from largo.checkpoint.load import load_state, load_weights, read_weights
from largo.checkpoint.release import describe_released, export_release, released_checkpoints, resolve_checkpoint, run_root
from largo.checkpoint.store import (BEST, CHECKPOINT_FILES, FORMAT_VERSION, latest_checkpoint, read_meta, save_best, save_checkpoint,
                                    write_config)

__all__ = ["BEST", "CHECKPOINT_FILES", "save_best", "FORMAT_VERSION", "describe_released", "export_release", "released_checkpoints", "latest_checkpoint", "load_state", "load_weights", "read_weights",
           "read_meta", "resolve_checkpoint", "run_root", "save_checkpoint", "write_config"]
