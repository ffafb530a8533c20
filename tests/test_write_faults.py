"""A file-size limit (`ulimit -f`, the way a nearly full disk behaves) hit while writing a checkpoint, a sample
grid, an eval JSON or a report: one line, a non-zero exit, and every file written before is left as it was."""

import os
import resource
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import SHARED_DATA
from largo.cli import main


def _run(args, cwd, limit):
    """`largo ARGS` in a child process under a file-size limit of `limit` bytes: forked from this one, so it
    starts with largo and torch already imported (a fresh interpreter would spend seconds importing them). The
    child runs the CLI's `main` as `python -m largo` does; its stderr goes through a pipe, which the limit does
    not cover, and its stdout to /dev/null. Returns what subprocess.run would (returncode, stderr)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_fd)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout is not looked at
            os.dup2(write_fd, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.chdir(cwd)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            try:
                code = main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, errors="replace") as f:
        output = f.read()
    _, status = os.waitpid(pid, 0)
    return SimpleNamespace(returncode=os.waitstatus_to_exitcode(status), stderr=output)


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _one_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("largo:") or "Traceback" in ln]
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("largo: error:"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.slow
def test_full_disk_while_writing_leaves_earlier_files_intact(tmp_path, monkeypatch):
    # The files written before each fault come from this process (main); only a limited run needs its own process.
    monkeypatch.chdir(tmp_path)
    sample = ["sample", "fashion_mnist-32-cpu", "--classes", "Bag", "--n", "1", "--steps", "2", "--out", "s"]
    assert main(sample) == 0
    before = _snapshot(tmp_path / "s")
    assert "File too large" in _one_line(_run([*sample, "--seed", "1"], tmp_path, limit=100))
    assert _snapshot(tmp_path / "s") == before

    ev = ["eval", "fashion_mnist-32-cpu", "--n", "4", "--steps", "2", "--ref-split", "test", "--ref-n", "50",
          "--no-inception", "--quiet", "--out", "e.json"]
    assert main(ev) == 0
    before = (tmp_path / "e.json").read_bytes()
    _one_line(_run([*ev, "--seed", "3"], tmp_path, limit=2000))
    assert (tmp_path / "e.json").read_bytes() == before

    train = ["train", "--preset", "demo", "--resolution", "16", "--base-channels", "32", "--channel-mult", "1,2",
             "--attention-resolutions", "8", "--num-heads", "2", "--batch-size", "8", "--steps", "2",
             "--max-minutes", "0", "--checkpoint-every", "1", "--sample-steps", "2", "--grid-per-class", "1",
             "--device", "cpu", "--quiet", "--run-dir", "run", "--data-root", str(SHARED_DATA), "--subset", "64"]
    assert main(train) == 0
    run = tmp_path / "run"
    before = _snapshot(run / "checkpoints")
    line = _one_line(_run(["train", "--resume", "run", "--steps", "4", "--quiet"], tmp_path, limit=50_000))
    assert "File too large" in line and "step_00000002 is intact" in line, line
    after = _snapshot(run / "checkpoints")
    assert {p: b for p, b in after.items() if p in before} == before  # the old checkpoint is untouched
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000002"

    assert main(["report", "run", "--n", "1", "--steps", "2", "--device", "cpu"]) == 0
    before = _snapshot(run / "report")
    _one_line(_run(["report", "run", "--n", "1", "--steps", "2", "--seed", "5", "--device", "cpu"], tmp_path,
                   limit=3000))
    assert _snapshot(run / "report") == before
