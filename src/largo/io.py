"""Atomic file writes: a reader (or a crash) never sees half a file, and the old file stays until the new
one is complete."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from largo.errors import LargoError


class WriteError(LargoError, OSError):
    """A file could not be written (disk full, quota, read-only folder, permissions).

    A `LargoError`, so the CLI prints it as one line instead of a traceback, and an `OSError` with the original
    `errno`, so callers that tolerate a failed write (`except OSError`, e.g. the dataset cache) still do."""

    def __init__(self, path: str | Path, cause: OSError, note: str = ""):
        if isinstance(cause, WriteError):  # already names the file that failed
            super().__init__(cause.errno, f"{cause.strerror}{note}")
            return
        reason = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(cause.errno, f"cannot write {path}: {reason}{note}")

    def __str__(self) -> str:
        return str(self.strerror)


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, fsync it, then rename over `path` (same folder, so the rename is atomic)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise (e if isinstance(e, WriteError) else WriteError(path, e)) from e
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would have
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e) from e
        # Writers in Rust (safetensors' save_file) report a full disk as "... (os error 28)" in their own type.
        found = re.search(r"\(os error (\d+)\)", str(e)) if isinstance(e, Exception) else None
        if found:
            code = int(found.group(1))
            raise WriteError(path, OSError(code, os.strerror(code))) from e
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parsed JSON of a file the user named; missing, unreadable or malformed is a one-line LargoError naming
    `what` it is (e.g. "config", "sweep config")."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LargoError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LargoError(f"cannot read {what} {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LargoError(f"{what} {path} is not valid JSON: {e}") from None


def atomic_save_image(path: str | Path, image: Any) -> Path:
    """Save a PIL image as PNG atomically: a failed write (full disk, file-size limit) leaves the old file."""
    path = Path(path)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return path
