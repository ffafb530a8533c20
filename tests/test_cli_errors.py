"""User mistakes end with one line on stderr, exit code 2, no traceback, and nothing already written is lost."""

import os

import pytest

from largo.cli import main


def _run(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors (bad choices) exit from inside parse_args
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("argv,needle", [
    (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'; valid: flowers102"),
    (["train", "--dataset", "folder:/no/such/dir"], "folder dataset not found"),
    (["train", "--preset", "demo", "--resolution", "30"], "not divisible by 4"),
    (["train", "--preset", "demo", "--p-uncond", "1.5"], "p_uncond must be in [0, 1)"),
    (["train", "--preset", "demo", "--data-root", "/tmp/empty-largo-root"], "fashion_mnist not found under"),
    (["train", "--config", "/no/such/config.json"], "config file not found"),
    (["train", "--epochs", "2"], "steps 10000 and epochs 2 both set the run's length: train by epochs with"),
    (["sample", "/no/such/run"], "no run, checkpoint or released checkpoint named"),
    (["sample", "fashion_mnist-32-cpu", "--n", "1", "--cfg", "nan"], "argument --cfg: must be a number in [0, 100], got nan"),
    (["sample", "fashion_mnist-32-cpu", "--n", "1", "--out", "/proc/nope"], "No such file or directory: /proc/nope"),
])
def test_one_line_errors(capsys, argv, needle):
    os.makedirs("/tmp/empty-largo-root", exist_ok=True)
    code, err = _run(capsys, argv)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("largo: error:") and needle in err[0], err


@pytest.fixture(scope="module")
def trained_run(tiny_run):
    return tiny_run  # every command here is refused before it writes


def test_unknown_class_name_lists_close_matches(capsys, trained_run):
    code, err = _run(capsys, ["sample", str(trained_run), "--classes", "trousers", "--n", "1"])
    assert code == 2 and len(err) == 1 and "unknown class 'trousers'; did you mean trouser" in err[0]


@pytest.mark.parametrize("command", ["sample", "eval"])
@pytest.mark.parametrize("flags,needle", [
    (["--steps", "0"], "argument --steps: must be an integer in [1, 100000], got 0"),
    (["--steps", "1001"], "--steps must be in [1, 1000], got 1001"),  # the run's T: checked once it is loaded
    (["--eta", "-0.5"], "argument --eta: must be a number in [0, 1], got -0.5"),
    (["--cfg", "-1"], "argument --cfg: must be a number in [0, 100], got -1"),
    (["--cfg-interval", "9"], "--cfg-interval must be LO,HI"),
    (["--precision", "fp8"], "invalid choice: 'fp8'"),
    (["--sampler", "plms"], "invalid choice: 'plms'"),
    (["--sampler", "dpmpp2m", "--eta", "0.5"], "--eta applies only to the ddim sampler (--sampler is dpmpp2m)"),
])
def test_bad_sampling_flags_are_one_line_errors(capsys, trained_run, command, flags, needle):
    """`largo sample` and `largo eval` share their sampling flags, so they refuse the same things alike."""
    code, err = _run(capsys, [command, str(trained_run), "--n", "2", *flags])
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_existing_run_is_never_overwritten(capsys, trained_run):
    before = {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()}
    code, err = _run(capsys, ["train", "--preset", "demo", "--run-dir", str(trained_run)])
    assert code == 2 and "already holds a run" in err[0]
    assert before == {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()}


def test_corrupt_checkpoint_is_a_clear_error(capsys, trained_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    ckpt = copy / "checkpoints" / (copy / "checkpoints" / "latest").read_text().strip()
    data = (ckpt / "ema.safetensors").read_bytes()
    (ckpt / "ema.safetensors").write_bytes(data[: len(data) // 2])
    code, err = _run(capsys, ["sample", str(copy), "--n", "1"])
    assert code == 2 and len(err) == 1 and "corrupt" in err[0]
