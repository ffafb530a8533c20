"""`largo demo` end to end in seconds: a few training steps of the demo preset, the grid, and the check by the
shipped classifier and the independent one of another architecture, whose verdict is the last line."""

import dataclasses
import json

import pytest
import torch

from largo.cli import main
from largo.config import preset_config
from largo.demo import run_demo
from largo.runtime import describe_precision, resolve_precision


@pytest.mark.slow
def test_demo_trains_draws_and_ends_with_both_verdicts(tmp_path, data_root, monkeypatch):
    import largo.demo

    def fewer_sampling_steps(name):  # the demo's 20 dpmpp2m steps over 70 images were 3/4 of this test's time
        cfg = preset_config(name)
        cfg.sample = dataclasses.replace(cfg.sample, sample_steps=4, grid_per_class=1)
        return cfg

    monkeypatch.setattr(largo.demo, "preset_config", fewer_sampling_steps)
    lines = []
    run = tmp_path / "demo"
    out = run_demo(minutes=0.02, run_dir=run, data_root=str(data_root), device="cpu", per_class=1,
                   check_per_class=2, log=lines.append)
    precision = describe_precision(resolve_precision("auto", torch.device("cpu")), torch.device("cpu"))
    assert lines[0].startswith("largo demo: training 1.07 M-parameter U-Net on Fashion-MNIST 28×28 (its own size")
    assert f"in {precision}; batch 32, v-prediction, min_snr weighting, class embedding add, transposed upsampling" in lines[0]
    assert "cfg 3, x̂0 not clipped" in lines[2]
    assert out["steps"] >= 1 and (run / "demo_grid.png").is_file()
    check = json.loads((run / "eval" / "demo_classifier.json").read_text())
    assert check["n_generated"] == 20 and check["classifier_arch"] == "preact-resnet-gn"
    assert check["independent_classifier_arch"] == "vgg-bn"
    assert out["accuracy"] == check["sample_accuracy"] and out["independent_accuracy"] == check[
        "independent_sample_accuracy"]
    last = lines[-1]
    assert last.startswith(f"largo demo: the classifier recognises {check['sample_accuracy']:.0%} of 20 samples")
    assert f"an independent one of another architecture: {check['independent_sample_accuracy']:.0%}" in last


def test_demo_refuses_an_existing_run(tmp_path, capsys, data_root):
    (tmp_path / "config.json").write_text("{}")
    assert main(["demo", "--run-dir", str(tmp_path), "--data-root", str(data_root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0]
    assert (tmp_path / "config.json").read_text() == "{}"
