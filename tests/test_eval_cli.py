"""`largo eval` end to end: a folder of PNGs with no Inception weights (offline metrics run, the skip is said),
a run directory (sample + evaluate), the reference cache, and bad inputs (exit 2, one line on stderr)."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from largo.cli import main
from largo.data import load_images
from largo.errors import LargoError
from largo.io import sha256_file
from largo.metrics import defaults
from largo.metrics.features import extract
from largo.metrics.refstats import reference_outputs

REF_N = ["--ref-n", "300", "--kid-subsets", "5"]


@pytest.fixture(autouse=True)
def _no_inception_weights(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("empty-torch-home")))


@pytest.fixture(scope="module")
def fashion_test(data_root):
    return load_images("fashion_mnist", "test", 32, str(data_root))


def _save(folder: Path, images: torch.Tensor, labels=None, names=None) -> Path:
    for i, img in enumerate(images):
        sub = folder if labels is None else folder / (names[int(labels[i])] if names else str(int(labels[i])))
        sub.mkdir(parents=True, exist_ok=True)
        arr = img.permute(1, 2, 0).numpy()
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(sub / f"{i:04d}.png")
    return folder


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("largo: error: ")
    return err[0]


def test_eval_images_without_inception_weights_runs_offline_metrics(tmp_path, fashion_test, data_root, capsys):
    names = [n.replace("/", "-") for n in fashion_test.class_names]
    folder = _save(tmp_path / "samples", fashion_test.images[:60], fashion_test.labels[:60], names)
    rc = main(["eval", "--images", str(folder), "--dataset", "fashion_mnist", "--data-root", str(data_root),
               *REF_N])
    out = capsys.readouterr().out
    assert rc == 0
    lines = [line for line in out.splitlines() if defaults.INCEPTION_WEIGHTS_FILE in line]
    assert len(lines) == 1 and "--inception-weights" in lines[0] and "hub/checkpoints" in lines[0]
    result = json.loads((tmp_path / "eval" / "samples.json").read_text())
    assert result["n_generated"] == 60 and result["n_reference"] == 300 and result["has_labels"]
    assert [s["what"] for s in result["skipped"]] == ["inception (FID, KID, IS)", "clip"]  # no weights: said
    assert defaults.INCEPTION_WEIGHTS_FILE in result["skipped"][0]["why"]
    assert list(result["feature_spaces"]) == ["classifier:fashion_mnist-32"]  # the shipped classifier
    space = result["feature_spaces"]["classifier:fashion_mnist-32"]
    for metric in ("fd", "kid", "precision_recall", "accuracy", "class_matched"):
        tags = {k: space[metric][k] for k in ("n_generated", "n_reference", "resolution", "resize", "extractor")}
        assert tags == {"n_generated": 60, "n_reference": 300, "resolution": 32, "resize": "none",
                        "extractor": space["extractor"] + "@" + space["sha256"][:12]}
    assert space["accuracy"]["overall"] > 0.8  # real test images, right labels
    assert len(space["class_matched"]["per_class"]) == 10 and space["kid"]["subset_size"] == 60
    assert space["precision_recall"]["precision"] > 0.5
    assert result["variance_gap"]["var_ratio"][0] == pytest.approx(1.0, abs=0.25)
    assert "inception-v3-compat" not in result["feature_spaces"]


def test_eval_flat_folder_skips_class_metrics(tmp_path, fashion_test, data_root, capsys):
    folder = _save(tmp_path / "flat", fashion_test.images[:40])
    out_json = tmp_path / "r.json"
    assert main(["eval", "--images", str(folder), "--dataset", "fashion_mnist", "--data-root", str(data_root),
                 "--out", str(out_json), *REF_N]) == 0
    result = json.loads(out_json.read_text())
    assert not result["has_labels"]
    space = result["feature_spaces"]["classifier:fashion_mnist-32"]
    assert "fd" in space and "accuracy" not in space and "class_matched" not in space
    assert any("class metrics" in s["what"] for s in result["skipped"])
    assert "class metrics (accuracy, class-matched FD/KID) skipped" in capsys.readouterr().out


def test_reference_features_are_cached(tmp_path, fashion_test):
    class Counting:
        name, resize, sha256 = "counting", "none", "ab" * 32
        id = "counting@abab"
        calls = 0

        def __call__(self, images):
            Counting.calls += 1
            f = images.float().flatten(1)[:, :8]
            return {"features": f, "logits": f[:, :3]}

    space, x, y = Counting(), fashion_test.images[:50], fashion_test.labels[:50]
    kw = dict(dataset="fashion_mnist", split="test", resolution=32, data_resize="zero-pad-28-to-32",
              batch_size=20, log=lambda s: None)
    first, info1 = reference_outputs(space, x, y, **kw)
    calls = Counting.calls
    second, info2 = reference_outputs(space, x, y, **kw)
    assert Counting.calls == calls == 3 and not info1["cached"] and info2["cached"]
    assert torch.equal(first["features"], second["features"]) and info1["cache"] == info2["cache"]
    assert Path(info1["cache"]).parent == defaults.refstats_dir()
    _, info3 = reference_outputs(space, x[:40], y[:40], **kw)  # other images: another key
    assert info3["cache"] != info1["cache"]
    assert torch.equal(extract(space, x, 7)["features"], first["features"])


@pytest.mark.slow
def test_eval_with_random_inception_weights_marks_them_unverified(tmp_path, fashion_test, data_root):
    """Plumbing only: torch-fidelity's Inception with random weights must never pass for FID."""
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("torch_fidelity")
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    weights = tmp_path / "random-inception.pth"
    torch.save(net.state_dict(), weights)
    folder = _save(tmp_path / "few", fashion_test.images[:4], fashion_test.labels[:4])  # ~1 s an image on 2 cores
    out_json = tmp_path / "r.json"
    assert main(["eval", "--images", str(folder), "--dataset", "fashion_mnist", "--data-root", str(data_root),
                 "--ref-n", "4", "--ref-split", "test", "--no-classifier", "--inception-weights", str(weights),
                 "--batch-size", "4", "--kid-subsets", "2", "--out", str(out_json), "--quiet"]) == 0
    space = json.loads(out_json.read_text())["feature_spaces"]["inception-v3-compat"]
    assert space["verified"] is False and "not comparable" in space["warning"]
    assert space["fd"]["resize"] == defaults.INCEPTION_RESIZE and space["fd"]["n_generated"] == 4
    assert space["fd"]["value"] >= 0 and space["kid"]["subset_size"] == 4 and "class_matched" in space
    assert space["inception_score"]["mean"] >= 1.0 and space["sha256"] == sha256_file(weights)


def test_eval_run_dir_samples_and_evaluates(tmp_path, data_root, tiny_run, capsys):
    import shutil

    from largo.metrics.classifier import save_classifier
    from largo.metrics.classifier_training import train_classifier

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    train = load_images("fashion_mnist", "train", 16, str(data_root))
    r = train_classifier(train.images[:200], train.labels[:200], train.images[200:300], train.labels[200:300],
                         train.class_names, epochs=1, batch_size=100, log=lambda s: None)
    clf = save_classifier(r.model, tmp_path / "clf16", {"dataset": "fashion_mnist", "resolution": 16,
                                                        "class_names": train.class_names})
    rc = main(["eval", str(run), "--n", "20", "--steps", "2", "--cfg", "2", "--batch-size", "10", "--seed", "3",
               "--classifier", str(clf), "--ref-n", "100", "--kid-subsets", "3", "--device", "cpu"])
    assert rc == 0
    files = list((run / "eval").glob("*.json"))
    assert len(files) == 1 and "ddim-2steps-cfg2-eta0-n20-seed3" in files[0].name
    result = json.loads(files[0].read_text())
    assert result["source"]["kind"] == "run" and result["source"]["steps"] == 2 and result["source"]["cfg"] == 2
    space = result["feature_spaces"]["classifier:fashion_mnist-16"]
    assert [row["n"] for row in space["accuracy"]["per_class"]] == [2] * 10  # classes cycled 0..K-1
    assert result["n_generated"] == 20 and result["resolution"] == 16
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["neither", "both", "no_dataset", "empty", "wrong_channels",
                                  "unknown_class", "kid_too_big", "wrong_classifier", "missing_weights_file"])
def test_eval_bad_inputs_exit_2_with_one_line(case, tmp_path, fashion_test, data_root, capsys):
    imgs, labels = fashion_test.images[:8], fashion_test.labels[:8]
    folder = tmp_path / "imgs"
    args = ["eval", "--images", str(folder), "--dataset", "fashion_mnist", "--data-root", str(data_root),
            "--ref-n", "50"]
    expect = ""
    if case == "neither":
        args, expect = ["eval"], "either RUN_DIR"
    elif case == "both":
        args, expect = ["eval", str(tmp_path), "--images", str(tmp_path)], "either RUN_DIR"
    elif case == "no_dataset":
        args, expect = ["eval", "--images", str(tmp_path)], "--dataset"
    elif case == "empty":
        folder.mkdir()
        expect = "no images"
    elif case == "wrong_channels":
        _save(folder, torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
        expect = "colour image"
    elif case == "unknown_class":
        _save(folder, imgs, labels)
        (folder / str(int(labels[0]))).rename(folder / "spaceship")
        expect = "unknown class name 'spaceship'"
    elif case == "kid_too_big":
        _save(folder, imgs, labels)
        args += ["--kid-subset-size", "20"]
        expect = "KID subset size 20"
    elif case == "wrong_classifier":
        _save(folder, imgs, labels)
        args[args.index("fashion_mnist")] = "mnist"
        args += ["--classifier", str(Path(defaults.classifier_search_dirs()[0]) / "fashion_mnist-32")]
        expect = "not 'mnist'"
    elif case == "missing_weights_file":
        _save(folder, imgs, labels)
        args += ["--inception-weights", str(tmp_path / "nope.pth")]
        expect = "no such file"
    assert main(args) == 2
    assert expect in _one_error_line(capsys)


def test_folder_reader_maps_class_names_and_checks_duplicates(tmp_path, fashion_test):
    from largo.metrics.folder import load_image_folder

    names = fashion_test.class_names
    _save(tmp_path / "a", fashion_test.images[:6], torch.tensor([0, 0, 1, 1, 9, 9]),
          ["t-shirt top", "TROUSER"] + names[2:])
    images, labels, info = load_image_folder(tmp_path / "a", names, 1, 32)
    assert images.shape == (6, 1, 32, 32) and sorted(labels.tolist()) == [0, 0, 1, 1, 9, 9]
    (tmp_path / "a" / "1").mkdir()
    Image.fromarray(fashion_test.images[0, 0].numpy()).save(tmp_path / "a" / "1" / "x.png")
    with pytest.raises(LargoError, match="same class 1"):
        load_image_folder(tmp_path / "a", names, 1, 32)


def test_eval_images_of_any_size_and_mode_are_brought_to_the_evaluation_resolution(tmp_path, fashion_test, data_root,
                                                                                       capsys):
    """A 608×662 grayscale-as-RGB PNG, a palette image and a 28×28 one, beside 32×32 PNGs: all are resized by the
    datasets' rule to Fashion-MNIST's 32 px (the reference set is not resized to the images)."""
    folder = tmp_path / "imgs"
    _save(folder, fashion_test.images[:6], fashion_test.labels[:6])
    big = Image.fromarray(fashion_test.images[0, 0].numpy()).resize((608, 662)).convert("RGB")
    big.save(folder / str(int(fashion_test.labels[0])) / "big.png")
    Image.fromarray(fashion_test.images[1, 0].numpy()).convert("P").save(folder / str(int(fashion_test.labels[1])) / "p.png")
    Image.fromarray(torch.zeros(28, 28, dtype=torch.uint8).numpy()).save(folder / str(int(fashion_test.labels[2])) / "s.png")
    out = tmp_path / "r.json"
    assert main(["eval", "--images", str(folder), "--dataset", "fashion_mnist", "--data-root", str(data_root),
                 "--ref-n", "50", "--no-inception", "--quiet", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["resolution"] == 32 and r["n_generated"] == 9
    assert r["source"]["resized"] == 2 and r["source"]["resize"] == "bicubic-shorter-side-center-crop"
