"""Where largo reads data, finds released checkpoints and keeps caches."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # src/largo/paths.py -> repository root (editable installs)
RELEASED_DIR = REPO_ROOT / "checkpoints"  # the source tree's released checkpoints and shipped domain classifiers


def cache_dir(*parts: str) -> Path:
    """`$LARGO_CACHE` or ~/.cache/largo, with sub-folders created on demand."""
    root = Path(os.environ.get("LARGO_CACHE") or Path.home() / ".cache" / "largo")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_data_root() -> Path:
    """`$LARGO_DATA`, else ../shared/data (from the working directory or the repository), else the cache."""
    if os.environ.get("LARGO_DATA"):
        return Path(os.environ["LARGO_DATA"])
    for candidate in (Path.cwd().parent / "shared" / "data", REPO_ROOT.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return cache_dir("data")


def released_dirs() -> list[Path]:
    """Where released checkpoints (and the shipped domain classifiers, in their `classifiers/`) are looked for, in
    order: every folder in `$LARGO_CHECKPOINTS` (separated by the OS path separator), the user cache
    (`$LARGO_CACHE/checkpoints`, default ~/.cache/largo/checkpoints), and the source tree's `checkpoints/` when
    largo runs from one. Folders that do not exist are left out."""
    env = [Path(p) for p in os.environ.get("LARGO_CHECKPOINTS", "").split(os.pathsep) if p]
    cache = Path(os.environ.get("LARGO_CACHE") or Path.home() / ".cache" / "largo") / "checkpoints"
    return [d for d in dict.fromkeys([*env, cache, RELEASED_DIR]) if d.is_dir()]
