"""Editing (SDEdit, inpainting, interpolation) and autoguidance: the library on a tiny random 8×8 network, the CLI and
the Python API on the session's tiny run. Each refusal is one line and writes nothing."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import largo
from largo.cli import main
from largo.config import preset_config
from largo.diffusion import Denoiser, NoiseSchedule
from largo.errors import LargoError
from largo.models import build_unet
from largo.sampling import SamplingOptions, generate_images, image_to_image, inpaint, interpolate_classes
from largo.sampling import interpolate_seeds
from largo.sampling.edit_folder import decode_image, named_mask
from largo.sampling.editing import check_masks, repaint_path, sdedit_start
from largo.sampling.guide import check_guide


def _net(seed: int):
    cfg = preset_config("demo")
    cfg.model = dataclasses.replace(cfg.model, image_channels=1, num_classes=10, channel_mult=(1, 2),
                                    attention_resolutions=(), base_channels=32)
    cfg.data = dataclasses.replace(cfg.data, resolution=8)
    torch.manual_seed(seed)
    net = build_unet(cfg.model, 8)
    with torch.no_grad():  # the output convolution starts at zero: give the random net an output
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval(), cfg


@pytest.fixture(scope="module")
def tiny():
    return _net(0)


def _images(n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)


OPTS = dict(sampler="ddim", steps=4, cfg=2.0)


def test_strength_zero_returns_the_image_and_one_is_plain_sampling(tiny):
    net, cfg = tiny
    x, y = _images(), torch.tensor([1, 2, 3, 4])
    zero = image_to_image(net, cfg, x, y, 0.0, **OPTS)
    assert torch.equal(zero.images, x) and zero.evaluations == 0
    one = image_to_image(net, cfg, x, y, 1.0, seeds=[5, 6, 7, 8], **OPTS)
    assert torch.equal(one.images, generate_images(net, cfg, y, [5, 6, 7, 8], **OPTS))
    half = image_to_image(net, cfg, x, y, 0.5, seeds=[5, 6, 7, 8], **OPTS)
    assert half.steps == 2 and half.evaluations == 2 * 2  # two steps, each a CFG pair
    assert not torch.equal(half.images, one.images)
    # the pixels move less at a lower strength
    low = image_to_image(net, cfg, x, y, 0.25, seeds=[5, 6, 7, 8], **OPTS)
    assert (low.images.float() - x.float()).abs().mean() < (one.images.float() - x.float()).abs().mean()


def test_sdedit_walks_the_last_share_of_the_grid(tiny):
    _, cfg = tiny
    options = SamplingOptions.resolve(cfg, sampler="dpmpp2m", steps=20)
    assert sdedit_start(cfg, options, 0.6) == (8, 12)
    assert sdedit_start(cfg, options, 0.01) == (19, 1)  # any strength above 0 walks at least one step
    assert sdedit_start(cfg, SamplingOptions.resolve(cfg, sampler="heun", steps=9), 1.0) == (0, 5)


@pytest.mark.parametrize("method", ["replace", "repaint", "ddnm"])
def test_inpainting_returns_the_unmasked_pixels_bit_for_bit(tiny, method):
    net, cfg = tiny
    x = _images()
    mask = named_mask("centre", 8)
    result = inpaint(net, cfg, x, mask, [3, 3, 5, 5], seeds=[0, 1, 2, 3], method=method, jump_length=2, resample=2,
                     **OPTS)
    keep = ~mask.expand_as(x)
    assert torch.equal(result.images[keep], x[keep])
    assert not torch.equal(result.images[~keep], x[~keep])  # the hole was filled
    walked = {"replace": 4, "ddnm": 4, "repaint": sum(1 for a, b in zip(repaint_path(4, 2, 2),
                                                                       repaint_path(4, 2, 2)[1:]) if b > a)}[method]
    assert result.steps == walked and result.evaluations == 2 * walked


def test_repaint_path_is_repaints_schedule():
    assert repaint_path(5, 10, 10) == [0, 1, 2, 3, 4, 5]  # jumps longer than the grid: plain
    assert repaint_path(6, 1, 1) == list(range(7))  # one sample per step: naive replacement's walk
    path = repaint_path(20, 5, 5)
    down = sum(1 for a, b in zip(path, path[1:]) if b == a + 1)
    up = sum(1 for a, b in zip(path, path[1:]) if b == a - 1)
    assert (path[0], path[-1], down, up) == (0, 20, 80, 60)  # jumps back at t = 0, 5, 10, four times each
    with pytest.raises(LargoError):
        repaint_path(20, 0, 5)


def test_autoguidance_at_w_1_is_the_conditional_model(tiny):
    net, cfg = tiny
    guide, _ = _net(7)
    sched = NoiseSchedule.from_config(cfg.diffusion)
    plain = Denoiser(net, sched, "v", cfg_scale=1.0, num_classes=10)
    auto = Denoiser(net, sched, "v", cfg_scale=1.0, num_classes=10,
                    guide=Denoiser(guide, sched, "v", num_classes=10))
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([900, 500, 20]), torch.tensor([0, 4, 9])
    a, b = plain(x, t, y), auto(x, t, y)
    assert torch.equal(a.x0, b.x0) and torch.equal(a.eps, b.eps) and auto.guide_evaluations == 0


def test_autoguidance_is_the_guide_plus_w_times_the_difference(tiny):
    net, cfg = tiny
    guide_net, _ = _net(7)
    sched = NoiseSchedule.from_config(cfg.diffusion)
    cond = Denoiser(net, sched, "v", num_classes=10)
    weak = Denoiser(guide_net, sched, "v", num_classes=10)
    auto = Denoiser(net, sched, "v", cfg_scale=2.5, num_classes=10, cfg_interval=(100, 800), guide=weak)
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([900, 500, 20]), torch.tensor([0, 4, 10])
    d, c, g = auto(x, t, y), cond(x, t, y), weak(x, t, y)
    # row 1 (t = 500, a class) is guided; row 0 is outside the interval, row 2 is the null class
    torch.testing.assert_close(d.x0[1], g.x0[1] + 2.5 * (c.x0[1] - g.x0[1]), rtol=0, atol=1e-5)  # fp32 net, batches of another size
    torch.testing.assert_close(d.eps[1], g.eps[1] + 2.5 * (c.eps[1] - g.eps[1]), rtol=0, atol=1e-5)  # fp32 net, batches of another size
    assert torch.equal(d.x0[[0, 2]], c.x0[[0, 2]])
    # guided by itself, any w is the conditional model
    same = Denoiser(net, sched, "v", cfg_scale=4.0, num_classes=10, guide=Denoiser(net, sched, "v", num_classes=10))
    torch.testing.assert_close(same(x, t, y).x0, c.x0, rtol=0, atol=1e-5)  # fp32 net, batches of another size


def test_class_interpolation_ends_on_the_two_classes_and_seed_interpolation_on_the_two_seeds(tiny):
    net, cfg = tiny
    strip = interpolate_classes(net, cfg, 2, 7, frames=4, seed=3, **OPTS)
    ends = generate_images(net, cfg, torch.tensor([2, 7]), [3, 3], **OPTS)
    assert strip.shape == (4, 1, 8, 8)
    assert (strip[[0, -1]].int() - ends.int()).abs().max() <= 1  # one-hot weights are the labels' embeddings
    assert not torch.equal(strip[1], strip[0])
    seeds = interpolate_seeds(net, cfg, 5, 11, 12, frames=5, **OPTS)
    ends = generate_images(net, cfg, torch.tensor([5, 5]), [11, 12], **OPTS)
    assert (seeds[[0, -1]].int() - ends.int()).abs().max() <= 1


def test_bad_inputs_are_one_line(tiny):
    net, cfg = tiny
    x = _images(2)
    for call in (lambda: image_to_image(net, cfg, x, [1, 2], 1.5, **OPTS),
                 lambda: image_to_image(net, cfg, x, [1, 2], float("nan"), **OPTS),
                 lambda: inpaint(net, cfg, x, torch.zeros(16, 16, dtype=torch.bool), [1, 2], **OPTS),
                 lambda: inpaint(net, cfg, x, named_mask("centre", 8), [1, 2], method="magic", **OPTS),
                 lambda: image_to_image(net, cfg, torch.zeros(2, 3, 8, 8, dtype=torch.uint8), [1, 2], 0.5, **OPTS),
                 lambda: image_to_image(net, cfg, x, [1, 12], 0.5, **OPTS),
                 lambda: decode_image(b"not an image at all", 1)):
        with pytest.raises(LargoError) as e:
            call()
        assert "\n" not in str(e.value)
    with pytest.raises(LargoError, match="16×16, the image 8×8"):
        check_masks(torch.zeros(16, 16, dtype=torch.bool), x)
    other = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, resolution=16))
    with pytest.raises(LargoError, match="resolution is 16, the model's 8"):
        check_guide(cfg, other, "runs/other")
    other = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset="mnist"))
    with pytest.raises(LargoError, match="dataset is mnist"):
        check_guide(cfg, other, "runs/other")


# -- the command line and the Python API on a saved run ----------------------------------------------------------
def test_largo_edit_writes_the_edit(tiny_run, tmp_path, capsys):
    out = tmp_path / "i2i"
    assert main(["edit", "img2img", str(tiny_run), "--image", "test:0", "--class", "Sandal", "--strength", "0.5",
                 "--steps", "4", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"input.png", "result.png", "grid.png", "edit.json"}
    mask = tmp_path / "mask.png"
    Image.fromarray((named_mask("left", 16).numpy() * 255).astype("uint8")).save(mask)
    out = tmp_path / "inp"
    assert main(["edit", "inpaint", str(tiny_run), "--image", "test:3", "--mask", str(mask), "--method", "ddnm",
                 "--steps", "4", "--out", str(out)]) == 0
    source = decode_image((out / "input.png").read_bytes(), 1)
    result = decode_image((out / "result.png").read_bytes(), 1)
    assert torch.equal(result[..., 8:], source[..., 8:])  # the right half is the input's
    out = tmp_path / "strip"
    assert main(["edit", "interpolate", str(tiny_run), "--classes", "Sneaker,Sandal", "--frames", "3",
                 "--steps", "2", "--out", str(out)]) == 0
    assert len(list(out.glob("frame_*.png"))) == 3
    assert "network evaluations" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["mask-size", "not-an-image", "strength", "guide-resolution", "no-class"])
def test_largo_edit_refuses_bad_input_with_one_line_and_writes_nothing(tiny_run, tmp_path, capsys, case):
    junk = tmp_path / "junk.png"
    junk.write_text("hello")
    big_mask = tmp_path / "big.png"
    Image.new("L", (28, 28), 255).save(big_mask)
    out = tmp_path / "out"
    base = ["--steps", "2", "--out", str(out)]
    argv = {"mask-size": ["inpaint", str(tiny_run), "--image", "test:0", "--mask", str(big_mask)],
            "not-an-image": ["img2img", str(tiny_run), "--image", str(junk), "--class", "Bag"],
            "strength": ["img2img", str(tiny_run), "--image", "test:0", "--strength", "1.5"],
            "guide-resolution": ["img2img", str(tiny_run), "--image", "test:0", "--guide-with",
                                 "fashion_mnist-28-cpu"],
            "no-class": ["img2img", str(tiny_run), "--image", str(big_mask)]}[case]
    assert main(["edit", *argv, *base]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("largo: error:") and "\n" not in err, err
    assert not out.exists()


def test_guide_with_on_sample_refuses_another_resolution(tiny_run, tmp_path, capsys):
    assert main(["sample", str(tiny_run), "--guide-with", "fashion_mnist-28-cpu", "--out", str(tmp_path / "s")]) == 2
    assert "resolution is 28, the model's 16" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_the_python_api_edits(tiny_run):
    pipe = largo.Pipeline.from_pretrained(str(tiny_run), device="cpu")
    image = pipe(["Sneaker"], steps=2)[0]
    assert pipe.edit(image, "Sneaker", strength=0.0).tobytes() == image.tobytes()
    mask = Image.fromarray((named_mask("centre", 16).numpy() * 255).astype("uint8"))
    filled = pipe.inpaint(image, mask, "Sneaker", method="ddnm", steps=2, output="tensor")
    keep = ~named_mask("centre", 16)
    assert torch.equal(filled[0][keep], torch.from_numpy(np.array(image))[keep])
    assert len(pipe.interpolate("Sneaker", "Sandal", frames=3, steps=2)) == 3
    guided = pipe(["Bag"], steps=2, cfg=1.0, guide_with=str(tiny_run), output="tensor")
    assert torch.equal(guided, pipe(["Bag"], steps=2, cfg=1.0, output="tensor"))
    assert callable(largo.inpaint) and callable(largo.image_to_image)
