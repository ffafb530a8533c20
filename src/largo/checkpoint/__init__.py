"""Checkpoints that never run code: the run-directory layout, safe loading, and released checkpoints by name."""

from largo.checkpoint.load import load_state, load_weights
from largo.checkpoint.release import RELEASED_DIR, export_release, resolve_checkpoint, run_root
from largo.checkpoint.store import (CHECKPOINT_FILES, FORMAT_VERSION, latest_checkpoint, read_meta, save_checkpoint,
                                    write_config)

__all__ = ["CHECKPOINT_FILES", "FORMAT_VERSION", "RELEASED_DIR", "export_release", "latest_checkpoint", "load_state", "load_weights",
           "read_meta", "resolve_checkpoint", "run_root", "save_checkpoint", "write_config"]
