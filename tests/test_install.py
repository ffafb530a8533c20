"""largo as a real package: a wheel built from this tree, installed (not editable) into a fresh venv, finds the
released checkpoints through the documented search path and writes under the folder it runs in."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_samples_from_anywhere(tmp_path):
    pytest.importorskip("setuptools")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w",
                    str(wheels), str(ROOT)], check=True, cwd=tmp_path)
    wheel = next(wheels.glob("largo-*.whl"))
    assert wheel.stat().st_size < 2_000_000, "the wheel must not carry checkpoints or data"
    with zipfile.ZipFile(wheel) as z:  # package data: the page of `largo serve`
        assert {f"largo/serve/static/{f}" for f in ("index.html", "app.js", "app.css")} <= set(z.namelist())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # no ensurepip: ~15 s
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    work = tmp_path / "somewhere"
    work.mkdir()
    # The new venv gets largo from the wheel and its dependencies (torch, …) from this environment's packages,
    # offline; this tree's editable install is not on the path (it is a .pth hook, which PYTHONPATH does not run).
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "LARGO_CHECKPOINTS": str(ROOT / "checkpoints"),
           "LARGO_CACHE": str(tmp_path / "cache")}
    where = subprocess.run([venv / "bin" / "python", "-c", "import largo.sampling, largo; print(largo.__file__)"],
                           env=env, cwd=work, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), where
    listed = subprocess.run([venv / "bin" / "largo", "checkpoints"], env=env, cwd=work, capture_output=True,
                            text=True, check=True).stdout
    assert "fashion_mnist-32-cpu" in listed
    run = subprocess.run([venv / "bin" / "largo", "sample", "fashion_mnist-32-cpu", "--classes", "Bag", "--n", "1",
                          "--steps", "2"], env=env, cwd=work, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert list((work / "samples" / "fashion_mnist-32-cpu").rglob("grid.png"))
