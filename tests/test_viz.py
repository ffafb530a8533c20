"""`largo viz …`: each picture of a tiny run has the pixel size its layout promises; the forward strip starts at the
input and ends in N(0, I); bad input is one LargoError line."""

import json

import pytest
import torch
from PIL import Image

from largo.cli import main
from largo.diffusion.schedules import NoiseSchedule
from largo.draw.grid import LABEL_W, LINE_H, PAD, TITLE_H
from largo.errors import LargoError
from largo.viz.curves import CURVES_SIZE, read_log, smooth
from largo.viz.forward import forward_process, forward_timesteps, pick_images
from largo.viz.histogram import HIST_PANEL
from largo.viz.sampling import frame_indices

CELL = 64 + PAD  # 16×16 images are drawn 4× (64 px) plus padding


def grid_size(cols, rows, header_lines=1, sections=1):
    return LABEL_W + cols * CELL + PAD, sections * (TITLE_H + header_lines * LINE_H + rows * CELL + PAD)


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run  # the pictures go to RUN/viz/, which no other module reads


def _png(path):
    with Image.open(path) as im:
        im.load()
        return im.size


# -- forward process -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_forward_strip_starts_at_the_input_and_ends_in_standard_noise(kind):
    x0 = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ts, abars, frames = forward_process(x0, NoiseSchedule.make(kind, 1000), frames=10, seed=0)
    assert ts[0] == 0 and ts[-1] == 999 and len(ts) == 10 == len(frames)
    assert torch.equal(frames[0], x0) and abars[0] == 1.0
    assert all(a > b for a, b in zip(abars, abars[1:]))
    last = frames[-1]
    assert abs(last.mean().item()) < 0.05 and abs(last.std().item() - 1) < 0.05
    assert not torch.allclose(frames[1], x0)


def test_forward_frame_count_is_checked():
    assert forward_timesteps(1000, 4) == [0, 333, 666, 999]
    with pytest.raises(LargoError, match="frames"):
        forward_timesteps(10, 11)
    assert pick_images(torch.tensor([1, 1, 0, 2, 0]), 4) == [2, 0, 3, 4]


def test_viz_forward_writes_one_block_per_schedule(tmp_path, data_root):
    out = tmp_path / "forward.png"
    code = main(["viz", "forward", "--dataset", "fashion_mnist", "--data-root", str(data_root), "--resolution",
                 "16", "--n-images", "2", "--frames", "4", "--out", str(out)])
    assert code == 0
    assert _png(out) == grid_size(cols=4, rows=2, header_lines=2, sections=2)


# -- pictures of a run -----------------------------------------------------------------------------
def test_viz_trajectory_shows_every_kth_step_and_the_output(run, tmp_path):
    out = tmp_path / "traj.png"
    assert main(["viz", "trajectory", str(run), "--class", "Trouser", "--seed", "3", "--sampler", "ddim",
                 "--steps", "4", "--every", "2", "--device", "cpu", "--out", str(out)]) == 0
    assert _png(out) == grid_size(cols=2 + 1, rows=2, header_lines=2)  # steps 1 and 3, then the output


def test_viz_cfg_sweep_and_samplers_and_grid(run, tmp_path):
    sweep, samplers, grid = tmp_path / "sweep.png", tmp_path / "samplers.png", tmp_path / "grid.png"
    assert main(["viz", "cfg-sweep", str(run), "--classes", "0,Bag", "--scales", "0,1,3", "--steps", "2",
                 "--device", "cpu", "--out", str(sweep)]) == 0
    assert _png(sweep) == grid_size(cols=3, rows=2)
    assert main(["viz", "samplers", str(run), "--samplers", "ddim,heun", "--nfe", "2,3", "--classes", "0,1",
                 "--device", "cpu", "--out", str(samplers)]) == 0
    assert _png(samplers) == grid_size(cols=2, rows=4)
    assert main(["viz", "grid", str(run), "--classes", "0,9", "--n", "2", "--steps", "2", "--device", "cpu",
                 "--out", str(grid)]) == 0
    w, h = _png(grid)
    assert h == 2 * CELL + PAD and w > 2 * CELL + PAD  # labelled_grid: label column sized to the names


def test_viz_curves_and_histogram(run, tmp_path):
    assert main(["viz", "curves", str(run), "--out", str(tmp_path / "curves.png")]) == 0
    assert _png(tmp_path / "curves.png") == CURVES_SIZE
    assert main(["viz", "histogram", str(run), "--n", "4", "--steps", "2", "--device", "cpu",
                 "--out", str(tmp_path / "hist.png")]) == 0
    assert _png(tmp_path / "hist.png") == (HIST_PANEL[0], HIST_PANEL[1] + 28)  # one channel, with a title
    assert main(["viz", "curves", str(run)]) == 0
    assert _png(run / "viz" / "curves.png") == CURVES_SIZE  # default: RUN_DIR/viz/


def test_read_log_skips_events_and_partial_lines(tmp_path):
    lines = [{"step": 2, "loss": 1.0, "lr": 1e-3}, {"step": 3, "event": "skipped non-finite step"},
             {"step": 4, "loss": 0.5, "lr": 1e-3}]
    (tmp_path / "log.jsonl").write_text("\n".join(map(json.dumps, lines)) + '\n{"step": 6, "lo')
    assert [r["step"] for r in read_log(tmp_path)] == [2, 4]
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no pull towards 0


# -- bad input -------------------------------------------------------------------------------------
def _error(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("largo: error: ") and "\n" not in err
    return err


def test_bad_input_is_one_line(run, tmp_path, capsys):
    empty = tmp_path / "fresh"
    empty.mkdir()
    (empty / "config.json").write_text((run / "config.json").read_text())
    assert "no complete checkpoint" in _error(capsys, ["viz", "trajectory", str(empty), "--device", "cpu"])
    assert "log.jsonl" in _error(capsys, ["viz", "curves", str(empty)])
    assert "unknown class 'Trowser'" in _error(capsys, ["viz", "trajectory", str(run), "--class", "Trowser",
                                                        "--device", "cpu"])
    assert "5 frames" in _error(capsys, ["viz", "trajectory", str(run), "--steps", "4", "--frames", "5",
                                         "--device", "cpu"])
    assert "--every" in _error(capsys, ["viz", "trajectory", str(run), "--steps", "4", "--every", "5",
                                        "--device", "cpu"])
    assert "frames" in _error(capsys, ["viz", "forward", "--dataset", "mnist", "--timesteps", "8", "--frames", "9"])
    with pytest.raises(LargoError):
        frame_indices(4, every=1, frames=2)
