"""`largo sweep`: a two-cell sampling sweep on a tiny run writes the full table, resumes without recomputing and
is reused by another sweep; a training sweep trains once; bad configs are one-line errors."""

import csv
import dataclasses
import json

import pytest

from helpers import tiny_config
from largo.cli import main
from largo.errors import LargoError
from largo.sweep import BASE_COLUMNS, TRAIN_COLUMNS, load_spec, run_sweep
from largo.train.trainer import Trainer

COMMON = {"n": 20, "seed": 0, "ref_n": 200, "kid_subsets": 2, "batch_size": 32, "device": "cpu",
          "inception": False}


def _tiny32(**train):
    cfg = tiny_config(**train)  # 32 px, so the shipped Fashion-MNIST classifier applies
    cfg.data = dataclasses.replace(cfg.data, resolution=32)
    cfg.model = dataclasses.replace(cfg.model, attention_resolutions=())  # the 8 of tiny_config: not reached at 32
    cfg.train = dataclasses.replace(cfg.train, device="cpu")
    return cfg


@pytest.fixture(scope="module")
def run32(tmp_path_factory, data_root):
    run_dir = tmp_path_factory.mktemp("sweep-run") / "run"
    Trainer(_tiny32(steps=4, checkpoint_every=2, keep=2), run_dir, progress=False).fit()
    return run_dir


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def _table(out):
    with open(out / "results.csv") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.mark.slow
def test_two_cell_sweep_writes_table_and_resumes(tmp_path, run32, capsys):
    out = tmp_path / "sweep"
    config = _write(tmp_path / "sweep.json", {"checkpoint": str(run32), **COMMON, "out": str(out),
                                              "grid": {"sampler": ["ddim", "dpmpp2m"], "steps": [3], "cfg": [2]}})
    assert main(["sweep", str(config)]) == 0
    header, rows = _table(out)
    assert header == BASE_COLUMNS
    assert [r["sampler"] for r in rows] == ["ddim", "dpmpp2m"]
    for r in rows:  # every metric the classifier space gives, the variance gap, time and memory are filled
        for col in ("class_acc", "fd_cls", "kid_cls", "precision_cls", "recall_cls", "cm_fd", "var_ratio", "hist_tv",
                    "s_per_img", "peak_mem_mb", "nfe"):
            assert r[col] != "", col
        assert r["fid"] == "" and r["n"] == "20" and r["mem_kind"] == "rss"
        assert 0 <= float(r["class_acc"]) <= 1 and float(r["s_per_img"]) > 0
    md = (out / "results.md").read_text()
    assert "| " + " | ".join(BASE_COLUMNS) + " |" in md and "N = 20" in md
    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == 2
    cell = json.loads(cells[0].read_text())
    assert cell["format"] == "largo-eval" and cell["sweep"]["memory"]["peak_mb"] > 0
    assert not any(s["what"].startswith("inception") for s in cell["skipped"])  # inception off by config
    mtimes = {p: p.stat().st_mtime_ns for p in cells}

    again = run_sweep(load_spec(config), log=lambda *a: None)
    assert again["computed"] == 0 and again["skipped"] == 2
    assert {p: p.stat().st_mtime_ns for p in cells} == mtimes
    assert _table(out)[1] == rows

    # a changed N is a different cell: listed as stale (recomputed), not silently reused
    capsys.readouterr()
    assert main(["sweep", str(config), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("done ") == 2
    assert main(["sweep", str(config), "--n", "10", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("stale ") == 2

    # another sweep reuses the finished cell it shares; euler ignores eta, so its two eta values are one cell
    other = _write(tmp_path / "b.json", {"checkpoint": str(run32), **COMMON, "out": str(tmp_path / "b"),
                                         "reuse": [str(out)],
                                         "grid": [{"sampler": ["ddim"], "steps": [3], "cfg": [2]},
                                                  {"sampler": ["euler"], "steps": [2], "eta": [0.5, 1]}]})
    capsys.readouterr()
    assert main(["sweep", str(other), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("reuse ") == 1
    got = run_sweep(load_spec(other), log=lambda *a: None)
    assert (got["reused"], got["computed"]) == (1, 1) and len(got["rows"]) == 2


@pytest.mark.slow
def test_a_list_of_checkpoints_runs_the_grid_on_each(tmp_path, run32):
    steps = [run32 / "checkpoints" / "step_00000002", run32 / "checkpoints" / "step_00000004"]
    config = _write(tmp_path / "s.json", {"checkpoint": [str(s) for s in steps], **COMMON, "out": str(tmp_path / "o"),
                                          "grid": {"sampler": ["ddim"], "steps": [2], "weights": ["ema", "online"],
                                                   "precision": ["fp32"]}})
    got = run_sweep(load_spec(config), log=lambda *a: None)
    names = sorted(r["cell"] for r in got["rows"])
    clip = "-clip" if _tiny32().sample.clip_x0 else ""  # the run's own x̂0 clipping (the demo preset's: off)
    assert names == [f"step{s}__ddim-2-cfg3-eta0-trailing-{w}{clip}-fp32" for s in (2, 4) for w in ("ema", "online")]
    assert sorted({r["checkpoint_step"] for r in got["rows"]}) == [2, 4]
    assert {r["precision"] for r in got["rows"]} == {"fp32"}
    twice = _write(tmp_path / "d.json", {"checkpoint": [str(run32), str(steps[1])], **COMMON, "out": str(tmp_path / "d"),
                                         "grid": {"sampler": ["ddim"], "steps": [2]}})
    with pytest.raises(LargoError, match="same training step"):
        run_sweep(load_spec(twice), log=lambda *a: None)


@pytest.mark.slow
def test_train_grid_trains_each_setting_once(tmp_path, data_root):
    base = _write(tmp_path / "base.json", _tiny32(steps=1, checkpoint_every=1).to_dict())
    config = _write(tmp_path / "train.json", {
        "train_grid": {"schedule": ["linear"]}, "base_config": {"config": str(base)}, "train": {"steps": 1},
        **COMMON, "out": str(tmp_path / "t"), "grid": {"sampler": ["ddim"], "steps": [2]}})
    got = run_sweep(load_spec(config), log=lambda *a: None)
    assert (got["trained"], got["computed"]) == (1, 1)
    header, rows = _table(tmp_path / "t")
    assert header[:len(TRAIN_COLUMNS)] == TRAIN_COLUMNS and "train.schedule" in header
    assert rows[0]["train_cell"] == "schedule-linear" and rows[0]["train_steps"] == "1"
    assert (tmp_path / "t" / "runs" / "schedule-linear" / "checkpoints").is_dir()
    again = run_sweep(load_spec(config), log=lambda *a: None)
    assert (again["trained"], again["computed"], again["skipped"]) == (0, 0, 1)


BAD = [
    ("not json", "{", "not valid JSON"),
    ("top level", [], "JSON object"),
    ("unknown key", {"checkpoint": "x", "out": "o", "grdi": {}}, "unknown key"),
    ("no out", {"checkpoint": "x"}, '"out"'),
    ("neither", {"out": "o"}, "exactly one"),
    ("both", {"out": "o", "checkpoint": "x", "train_grid": {"schedule": ["cosine"]}}, "exactly one"),
    ("sampler", {"out": "o", "checkpoint": "x", "grid": {"sampler": ["ddimm"]}}, "unknown sampler"),
    ("steps", {"out": "o", "checkpoint": "x", "grid": {"steps": [0]}}, "steps"),
    ("empty", {"out": "o", "checkpoint": "x", "grid": {"cfg": []}}, "empty"),
    ("grid key", {"out": "o", "checkpoint": "x", "grid": {"guidance": [1]}}, "unknown grid key"),
    ("n", {"out": "o", "checkpoint": "x", "n": 1}, '"n"'),
    ("precision", {"out": "o", "checkpoint": "x", "grid": {"precision": ["fp8"]}}, "unknown precision 'fp8'"),
    ("old key", {"out": "o", "checkpoint": "x", "grid": {"sample_precision": ["bf16"]}}, 'is now "precision"'),
    ("checkpoint list", {"out": "o", "checkpoint": []}, '"checkpoint"'),
    ("eta", {"out": "o", "checkpoint": "x", "grid": {"eta": [2]}}, "eta"),
    ("train field", {"out": "o", "train_grid": {"shedule": ["cosine"]}}, "unknown train_grid field"),
    ("train value", {"out": "o", "train_grid": {"schedule": ["square"]}}, "unknown schedule"),
    ("train key type", {"out": "o", "train_grid": {"ema_decay": ["high"]}}, "ema_decay"),
    ("preset", {"out": "o", "train_grid": {"schedule": ["cosine"]}, "base_config": "nope"}, "preset"),
    ("train w/o grid", {"out": "o", "checkpoint": "x", "train": {"steps": 3}}, "train_grid"),
]


@pytest.mark.parametrize("label,config,message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_one_line_error(tmp_path, capsys, label, config, message):
    path = tmp_path / "bad.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("largo: error: ") and message in err[0], err


def test_missing_config_and_checkpoint(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.json")]) == 2
    assert "not found" in capsys.readouterr().err
    cfg = _write(tmp_path / "c.json", {"checkpoint": str(tmp_path / "no-run"), "out": str(tmp_path / "o")})
    assert main(["sweep", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-run" in err[0]


def test_steps_beyond_the_checkpoint_fail_before_sampling(tmp_path, tiny_run):
    cfg = _write(tmp_path / "c.json", {"checkpoint": str(tiny_run), **COMMON, "out": str(tmp_path / "o"),
                                       "grid": {"steps": [2, 5000]}})
    with pytest.raises(LargoError, match="5000"):
        run_sweep(load_spec(cfg), log=lambda *a: None)
    assert not (tmp_path / "o" / "cells").exists()
