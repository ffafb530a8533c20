"""Reliability at CI scale: SIGKILL + resume is bitwise exact, SIGTERM checkpoints and exits 0, pickle payloads
never run, bad inputs are one-line errors that change nothing, `--keep`, the non-finite guard, corrupt images.

Everything trains a ~0.17 M-parameter net on a 24-image 8x8 folder dataset (a step takes milliseconds); the
subprocess tests pay ~3 s of `import torch` each. The full versions are benchmarks/kill_resume.py and
benchmarks/bad_input_sweep.py (numbers in docs/RELIABILITY.md).
"""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import largo.checkpoint.store as checkpoint_module
import largo.train.diffusion_task as task_module
from helpers import make_folder
from largo.checkpoint import latest_checkpoint, load_state
from largo.cli import main
from largo.data import load_images

TINY = ["--resolution", "8", "--base-channels", "32", "--channel-mult", "1", "--num-res-blocks", "1",
        "--attention-resolutions", "", "--num-heads", "1", "--dropout", "0.1", "--batch-size", "4",
        "--timesteps", "100", "--lr", "1e-3", "--lr-warmup", "3", "--lr-schedule", "cosine", "--ema-decay", "0.99",
        "--balanced", "true", "--sample-steps", "3", "--grid-per-class", "1", "--device", "cpu",
        "--max-minutes", "1", "--log-every", "1", "--quiet"]


def train_argv(data: Path, run: Path, *extra: str, steps: int = 4) -> list[str]:
    return ["train", "--dataset", f"folder:{data}", *TINY, "--steps", str(steps), "--run-dir", str(run), *extra]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(capsys, argv: list[str]) -> tuple[int, list[str]]:
    code = main([str(a) for a in argv])
    return code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def step_of(run: Path) -> int:
    """Step of the checkpoint a resume would load (-1: none); safe to call while a run writes and prunes."""
    try:
        return int(json.loads((latest_checkpoint(run) / "meta.json").read_text())["step"])
    except (TypeError, OSError, ValueError, KeyError):
        return -1


def assert_same_weights(run_a: Path, run_b: Path) -> None:
    a, b = latest_checkpoint(run_a), latest_checkpoint(run_b)
    for f in ("model.safetensors", "ema.safetensors"):
        ta, tb = load_file(str(a / f)), load_file(str(b / f))
        assert ta.keys() == tb.keys()
        assert all(torch.equal(ta[k], tb[k]) for k in ta), f"{f} differs"


# One intra-op thread everywhere: exact resume compares runs with the same thread count, and on a shared 2-core
# machine a second OpenMP thread that has to wait for a busy core makes tiny convolutions ~100x slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data") / "shapes")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(train_argv(data, run, "--checkpoint-every", "2")) == 0
    return run


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def _popen(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "largo", *map(str, argv)], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            pytest.fail(f"process ended (rc {proc.returncode}) before the condition: {proc.communicate()[1][-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail("timed out")
        time.sleep(0.02)  # polling reads files: more often would take CPU from the run it waits for


# -- exact resume after SIGKILL --------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_is_bitwise_identical(data, tmp_path):
    steps = 24
    argv = train_argv(data, tmp_path / "ref", "--checkpoint-every", "1", steps=steps)
    assert main(argv) == 0  # the uninterrupted run, in this process
    run = tmp_path / "killed"
    rng = random.Random(0)
    kills = []
    for i, target in enumerate((5, 14)):
        cmd = train_argv(data, run, "--checkpoint-every", "1", steps=steps) if i == 0 else \
            ["train", "--resume", run, "--quiet"]
        proc = _popen(cmd, tmp_path)
        try:
            _wait_for(lambda: step_of(run) >= target, proc)
            time.sleep(rng.uniform(0, 0.03))  # mid-step or mid-checkpoint-write
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            proc.kill()
        kills.append(step_of(run))
    assert kills[0] >= 5 and kills[1] >= 14 and kills[1] < steps, kills  # both kills hit an unfinished run
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # the last stretch, in this process like the reference
    assert step_of(run) == steps
    assert_same_weights(tmp_path / "ref", run)
    logged = [json.loads(ln)["step"] for ln in (run / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, steps + 1))  # lines past the resumed checkpoint were dropped, none repeated


# -- graceful SIGTERM ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_finishes_the_step_writes_a_checkpoint_and_exits_0(data, tmp_path):
    run = tmp_path / "run"
    proc = _popen(train_argv(data, run, "--checkpoint-every", "100000", steps=5000), tmp_path)
    try:
        log = run / "log.jsonl"
        _wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    stopped = int(out.split("stopped at step ")[1].split()[0])
    assert "(signal)" in out and 3 <= stopped < 5000
    ckpt = latest_checkpoint(run)
    assert ckpt.name == f"step_{stopped:08d}"
    assert load_state(ckpt)["step"] == stopped
    assert max(json.loads(ln)["step"] for ln in log.read_text().splitlines()) == stopped
    assert not list((run / "checkpoints").glob(".*tmp*"))


# -- safe loading ----------------------------------------------------------------------------------------
class ExecPayload:
    """Unpickling this calls exec(), which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


def test_pickle_payload_in_state_pt_is_refused_and_never_runs(capsys, run_copy, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    state_pt = latest_checkpoint(run_copy) / "state.pt"
    torch.save({"step": 4, "optimizer": ExecPayload(marker), "ema_updates": 4, "stream": {}, "rng": {}}, state_pt)
    before = snapshot(run_copy)
    code, err = cli(capsys, ["train", "--resume", run_copy, "--quiet"])
    assert code == 2 and len(err) == 1 and err[0].startswith("largo: error:"), err
    assert "refused" in err[0] and "GLOBAL exec" in err[0]
    assert not marker.exists()
    assert snapshot(run_copy) == before
    torch.load(state_pt, weights_only=False)  # the payload is live: a plain unpickler runs it
    assert marker.exists()


# -- bad inputs: one line, non-zero exit, nothing earlier changed -------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _reshape_a_weight(ckpt: Path) -> None:
    t = load_file(str(ckpt / "ema.safetensors"))
    k = next(k for k in sorted(t) if t[k].ndim == 4)
    t[k] = torch.zeros(t[k].shape[0] * 2, *t[k].shape[1:])
    save_file(t, str(ckpt / "ema.safetensors"))


def _edit_json(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def _no_checkpoints(run: Path) -> None:
    for p in (run / "checkpoints").iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    (run / "checkpoints" / "latest").write_bytes(b"\xff\xfe\x00")


def _config_file(run: Path, name: str, fn) -> Path:
    d = json.loads((run / "config.json").read_text())
    fn(d)
    (run.parent / name).write_text(json.dumps(d))
    return run.parent / name


SAMPLE = ["sample", "{run}", "--n", "1", "--device", "cpu"]
RESUME = ["train", "--resume", "{run}", "--quiet"]
NEW_RUN = ["--run-dir", "{new}", "--steps", "2", "--max-minutes", "1", "--quiet"]
BAD_INPUTS = [  # (id, damage(run, latest) -> optional extra path, argv, needle)
    ("truncated ema.safetensors", lambda r, c: _truncate(c / "ema.safetensors"), SAMPLE, "corrupt"),
    ("wrong-shape weights", lambda r, c: _reshape_a_weight(c), SAMPLE, "do not fit this model"),
    ("meta.json format version 99", lambda r, c: _edit_json(c / "meta.json", lambda m: m.update(format_version=99)),
     SAMPLE, "format version 99"),
    ("truncated state.pt", lambda r, c: _truncate(c / "state.pt"), RESUME, "is corrupt"),
    ("no complete checkpoint, garbage latest", lambda r, c: _no_checkpoints(r), RESUME, "nothing to resume"),
    ("model config changed", lambda r, c: _edit_json(r / "config.json", lambda d: d["model"].update(base_channels=64)),
     RESUME, "model config differs"),
    ("config wrong type", lambda r, c: None,
     ["train", "--config", "{cfg_type}", *NEW_RUN], "train.lr must be float, got 'fast'"),
    ("config NaN lr", lambda r, c: None, ["train", "--config", "{cfg_nan}", *NEW_RUN], "lr must be a finite number"),
    ("empty class folder", lambda r, c: None,
     ["train", "--dataset", "folder:{empty_class}", *TINY, *NEW_RUN], "holds no images"),
    ("unknown class name", lambda r, c: None, [*SAMPLE, "--classes", "cta"], "unknown class 'cta'; did you mean cat"),
    ("sampler steps out of range", lambda r, c: None, [*SAMPLE, "--steps", "5000"], "--steps must be in [1, 100]"),
]


@pytest.mark.parametrize("damage,argv,needle", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_and_changes_nothing(capsys, run_copy, data, tmp_path, damage, argv, needle):
    damage(run_copy, latest_checkpoint(run_copy))
    empty_class = tmp_path / "folder"
    shutil.copytree(data, empty_class)
    (empty_class / "empty").mkdir()
    paths = {"run": run_copy, "new": tmp_path / "new", "empty_class": empty_class,
             "cfg_type": _config_file(run_copy, "type.json", lambda d: d["train"].update(lr="fast")),
             "cfg_nan": _config_file(run_copy, "nan.json", lambda d: d["train"].update(lr=float("nan")))}
    before = snapshot(tmp_path)
    code, err = cli(capsys, [a.format(**paths) for a in argv])
    assert code != 0 and len(err) == 1 and err[0].startswith("largo: error:"), err
    assert needle in err[0], err
    assert snapshot(tmp_path) == before  # nothing written, nothing changed (no new run directory either)


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(capsys, run_copy, monkeypatch):
    _edit_json(run_copy / "config.json", lambda d: d["train"].update(steps=8))  # the resume trains and saves
    (run_copy / "config.json").write_text(json.dumps(json.loads((run_copy / "config.json").read_text()), indent=2)
                                          + "\n")  # byte-identical to what the trainer writes back
    real_open = open

    def full_disk_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if "w" in mode and str(file).endswith("state.pt"):
            f.write(b"partial")
            f.close()
            raise OSError(28, "No space left on device")
        return f

    monkeypatch.setattr(checkpoint_module, "open", full_disk_open, raising=False)
    ckpts_before = snapshot(run_copy / "checkpoints")
    code, err = cli(capsys, ["train", "--resume", run_copy, "--quiet", "--checkpoint-every", "8"])
    assert code == 2 and len(err) == 1, err
    assert "No space left on device" in err[0] and "step_00000004 is intact" in err[0], err
    assert snapshot(run_copy / "checkpoints") == ckpts_before  # no partial folder, latest unchanged
    assert latest_checkpoint(run_copy).name == "step_00000004"


# -- retention and the latest pointer ---------------------------------------------------------------------
def test_keep_retention_and_resave_of_the_latest_step(capsys, data, tmp_path):
    run = tmp_path / "run"
    assert main(train_argv(data, run, "--checkpoint-every", "1", "--keep", "2", steps=5)) == 0
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_00000004", "step_00000005"]
    assert (ckpts / "latest").read_text() == "step_00000005\n"
    weights = snapshot(ckpts / "step_00000005")
    # Resuming a finished run re-saves the step `latest` names (file by file, never a dangling pointer).
    assert main(["train", "--resume", str(run), "--quiet", "--keep", "1"]) == 0
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_00000005"]
    after = snapshot(ckpts / "step_00000005")
    assert all(after[f] == weights[f] for f in ("model.safetensors", "ema.safetensors"))
    # A damaged pointer falls back to the newest complete checkpoint.
    (ckpts / "latest").write_bytes(b"\x00garbage")
    assert latest_checkpoint(run) == ckpts / "step_00000005"


# -- non-finite guard ----------------------------------------------------------------------------------------
def _nan_on(monkeypatch, bad_calls) -> None:
    real = task_module.diffusion_loss
    calls = {"n": 0}

    def loss(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if bad_calls(calls["n"]) else out

    monkeypatch.setattr(task_module, "diffusion_loss", loss)


def test_non_finite_steps_are_skipped_counted_and_logged(monkeypatch, data, tmp_path):
    _nan_on(monkeypatch, lambda n: n in (3, 4))
    run = tmp_path / "run"
    assert main(train_argv(data, run, "--checkpoint-every", "6", steps=6)) == 0
    records = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert [r["consecutive"] for r in records if r.get("event") == "skipped non-finite step"] == [1, 2]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert load_state(latest_checkpoint(run))["bad_steps_total"] == 2
    weights = load_file(str(latest_checkpoint(run) / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_repeated_non_finite_steps_stop_the_run_with_the_last_good_checkpoint(capsys, monkeypatch, data, tmp_path):
    _nan_on(monkeypatch, lambda n: n >= 3)
    run = tmp_path / "run"
    code, err = cli(capsys, train_argv(data, run, "--checkpoint-every", "1", "--max-bad-steps", "3", steps=50))
    assert code == 2 and len(err) == 1, err
    assert "3 consecutive steps had a non-finite loss or gradient" in err[0]
    assert latest_checkpoint(run).name == "step_00000002"  # the last good step, complete and loadable
    assert load_state(latest_checkpoint(run))["step"] == 2
    assert not list((run / "checkpoints").glob(".*tmp*"))


# -- corrupt images in a folder dataset ------------------------------------------------------------------------
def test_corrupt_folder_images_error_or_skip(capsys, data, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(data, folder)
    truncated = folder / "cat" / "truncated.png"
    truncated.write_bytes((data / "cat" / "000.png").read_bytes()[:60])
    not_an_image = folder / "dog" / "notes.jpg"
    not_an_image.write_text("not a jpeg")
    code, err = cli(capsys, ["train", "--dataset", f"folder:{folder}", *TINY, "--run-dir", tmp_path / "new"])
    assert code == 2 and len(err) == 1 and str(truncated) in err[0] and "--bad-images skip" in err[0], err
    assert not (tmp_path / "new").exists()

    images = load_images(f"folder:{folder}", "all", 8, bad_images="skip")
    assert len(images) == 24 and sorted(images.skipped) == sorted([str(truncated), str(not_an_image)])
    assert "skipped 2 unreadable image(s)" in capsys.readouterr().out
    with pytest.raises(Exception, match="cannot read image"):  # a cached skip result does not mask `error`
        load_images(f"folder:{folder}", "all", 8, bad_images="error")


# -- atomic writes ---------------------------------------------------------------------------------------------
def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    from largo.errors import LargoError
    from largo.io import WriteError, atomic_write, atomic_write_text

    target = tmp_path / "config.json"
    atomic_write_text(target, "old\n")
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600

    def full_disk(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError) as info:
        atomic_write(target, full_disk)
    assert isinstance(info.value, LargoError) and isinstance(info.value, OSError) and info.value.errno == 28
    assert str(info.value) == f"cannot write {target}: No space left on device"
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]

    def rust_writer(tmp: str) -> None:  # what safetensors' save_file raises on a full disk
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(WriteError, match="No space left on device"):
        atomic_write(target, rust_writer)
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old
