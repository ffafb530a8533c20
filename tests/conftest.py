import os
from pathlib import Path

import pytest

from helpers import SHARED_DATA, tiny_config


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never read or write the user's ~/.cache/largo."""
    old = os.environ.get("LARGO_CACHE")
    os.environ["LARGO_CACHE"] = str(tmp_path_factory.mktemp("largo-cache"))
    yield
    if old is None:
        os.environ.pop("LARGO_CACHE", None)
    else:
        os.environ["LARGO_CACHE"] = old


@pytest.fixture(scope="session", autouse=True)
def _no_fsync():
    """In this process fsync only checks its descriptor: the suite writes hundreds of checkpoints to throwaway
    folders, and a real fsync on a busy disk costs milliseconds each. The tests of durability kill or limit
    subprocesses (test_reliability.py, test_write_faults.py, test_distributed.py), which fsync for real."""
    real = os.fsync
    os.fsync = os.fstat  # still raises on a bad descriptor, as fsync would
    yield
    os.fsync = real


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (SHARED_DATA / "FashionMNIST").is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny convolutions run far faster on one thread, and much slower with threads fighting over busy cores;
    subprocesses the tests start inherit the same setting."""
    import torch

    old_threads, old_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(old_threads)
    if old_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = old_env


@pytest.fixture(scope="session")
def train_tiny(tmp_path_factory, data_root):
    """train_tiny(name, **train_overrides) → the folder of a finished tiny run (a few steps of a tiny U-Net on
    16×16 Fashion-MNIST), each call in a fresh folder so tests that write into a run don't meet."""
    from largo.train.trainer import Trainer

    def train(name: str = "run", **train_overrides) -> Path:
        run = tmp_path_factory.mktemp(name)
        Trainer(tiny_config(**train_overrides), run, progress=False).fit()
        return run

    return train


@pytest.fixture(scope="session")
def tiny_run(train_tiny) -> Path:
    """One finished tiny run (6 steps, checkpoints at 3 and 6) shared by every module that only reads it or writes
    its own sub-folder (viz/); a test that changes a run copies it (`shutil.copytree`) or trains its own."""
    return train_tiny("tiny-run")
