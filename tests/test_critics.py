"""Re-ranking by a classifier critic: among K seeded candidates it keeps the one the critic prefers, K = 1 is plain
sampling, results repeat per seed, and the critic is not the classifier `largo eval` scores with."""

import pytest
import torch

from largo.cli import main
from largo.critics import generate_reranked, load_critic
from largo.sampling import SamplingOptions, load_model


def test_reranking_keeps_the_candidate_the_critic_prefers_and_repeats_per_seed():
    model = load_model("fashion_mnist-32-cpu")
    critic = load_critic("classifier", model)
    assert "critic" in critic.name  # the second classifier, not the one eval scores with
    options = SamplingOptions.resolve(model.cfg, steps=3)
    labels, seeds, k = torch.tensor([0, 5, 7]), [11, 12, 13], 3
    kept, info = generate_reranked(model, labels, seeds, options, critic, k)
    every = model.generate(labels.repeat_interleave(k), [s * k + j for s in seeds for j in range(k)], options)
    scores = critic(every, labels.repeat_interleave(k)).view(3, k)
    expected = every.view(3, k, *every.shape[1:])[torch.arange(3), scores.argmax(1)]
    assert torch.equal(kept, expected)
    assert info["images_drawn"] == 9 and info["mean_score_kept"] >= info["mean_score_all"]
    again, _ = generate_reranked(model, labels, seeds, options, critic, k)
    assert torch.equal(kept, again)
    one, _ = generate_reranked(model, labels, seeds, options, critic, 1)
    assert torch.equal(one, model.generate(labels, seeds, options))


def test_rerank_flags(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", "fashion_mnist-32-cpu", "--classes", "Bag", "--n", "1", "--steps", "2", "--rerank",
                 "classifier", "--candidates", "2", "--out", str(out)]) == 0
    assert "best of 2 by classifier:fashion_mnist-32-critic" in capsys.readouterr().out
    for flags, needle in ((["--candidates", "0"], "--candidates: must be an integer in [1, 64]"),
                          (["--critic", str(tmp_path / "nope")], "no classifier at")):
        code = main(["sample", "fashion_mnist-32-cpu", "--n", "1", "--steps", "2", "--rerank", "classifier",
                     "--out", str(tmp_path / "x"), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], err
        assert not (tmp_path / "x").exists()  # refused before anything was written


@pytest.mark.slow
def test_recognisability_along_the_reverse_process(tmp_path):
    """Accuracy on x_t and x̂0 at every step of a real model; the last x̂0 is the sample itself."""
    import json

    from largo.evaluation import recognisability

    model = load_model("fashion_mnist-32-cpu")
    r = recognisability(model, SamplingOptions.resolve(model.cfg, steps=4), per_class=2)
    assert [row["step"] for row in r["rows"]] == [0, 1, 2, 3, 4] and r["n"] == 20
    assert all(0 <= row["acc_xt"] <= 1 and 0 <= row["acc_x0"] <= 1 for row in r["rows"])
    assert r["rows"][-1]["acc_xt"] == r["rows"][-1]["acc_x0"] == r["final_accuracy"] >= 0.5  # a trained model
    assert r["rows"][0]["acc_xt"] <= 0.3  # pure noise is not recognisable
    out = tmp_path / "rec.png"
    assert main(["viz", "recognisability", "fashion_mnist-32-cpu", "--n", "1", "--steps", "3", "--out",
                 str(out)]) == 0
    assert out.is_file() and len(json.loads(out.with_suffix(".json").read_text())["rows"]) == 4


@pytest.mark.slow
def test_clip_scores_and_clip_reranking_plumbing(tmp_path, capsys):
    """Plumbing only: a randomly initialised CLIP of a real architecture (open_clip's ViT-S-32) saved to disk and
    loaded offline. No number from it is a CLIP score; the test checks that every path runs and reports."""
    import json

    open_clip = pytest.importorskip("open_clip")
    torch.save(open_clip.create_model("ViT-S-32").state_dict(), tmp_path / "clip.pt")
    spec = f"ViT-S-32:{tmp_path / 'clip.pt'}"
    out = tmp_path / "eval.json"
    assert main(["eval", "fashion_mnist-32-cpu", "--n", "10", "--steps", "2", "--ref-split", "test", "--ref-n", "50",
                 "--no-inception", "--quiet", "--clip", spec, "--out", str(out)]) == 0
    clip = json.loads(out.read_text())["clip"]
    assert clip["template"] == "a photo of a {}." and sum(r["n"] for r in clip["per_class"]) == 10
    assert set(clip["quality_prompts"]) == {"good", "clear", "blurry"}
    assert all(-100 <= v <= 100 for v in [clip["clip_score"], *clip["quality_prompts"].values()])
    assert main(["sample", "fashion_mnist-32-cpu", "--rerank", "clip", "--clip", spec, "--candidates", "2", "--n",
                 "1", "--classes", "Bag", "--steps", "2", "--out", str(tmp_path / "s")]) == 0
    assert "best of 2 by clip:ViT-S-32" in capsys.readouterr().out
    torch.save({"not": torch.zeros(1)}, tmp_path / "wrong.pt")
    for clip_spec, needle in ((f"ViT-S-32:{tmp_path / 'nope.pt'}", "CLIP weights not found"),
                              (f"ViT-S-32:{tmp_path / 'wrong.pt'}", "do not load as ViT-S-32"),
                              ("no-such-arch:x", "unknown CLIP architecture")):
        code = main(["eval", "fashion_mnist-32-cpu", "--n", "4", "--steps", "2", "--ref-n", "50", "--no-inception",
                     "--clip", clip_spec, "--out", str(tmp_path / "bad.json")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], err
