"""Every setting takes effect or is refused (issue 28): the walk below sets each field of each config section, in
turn, to a value other than its base value and checks that the run then *does* something else (another data
stream, network, noise schedule, loss, optimizer or loop behaviour, or other samples) or is refused with one line
before any work. A value accepted and silently ignored fails the test, naming the field.

What a run does is fingerprinted from a two-step run of a tiny model (`_fingerprint`): the trained and EMA weights
of its last checkpoint, which checkpoints it kept, its log's steps and events, its sample grids, how and where it
stopped, and what the trainer was built with (device, precision, memory format, compiled or not). The config files
it writes are left out: they say what was asked, not what was done. A field added to a config section without a
probe value here (when the automatic one cannot be used) fails `test_every_field_is_walked`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import make_folder, tiny_config
from largo.config import (LATENT_NORMS, PRECISIONS, PREDICTIONS, SAMPLE_PRECISIONS, SAMPLERS, SCHEDULES, SPACINGS,
                          WEIGHTINGS, AutoencoderRunConfig, RunConfig, field_types)
from largo.config.choices import CLASS_EMBEDDINGS, RECONSTRUCTION_LOSSES, UPSAMPLES
from largo.errors import LargoError
from largo.train.trainer import Trainer

# Every value a choice field accepts is walked.
CHOICES = {"schedule": SCHEDULES, "prediction": PREDICTIONS, "loss_weighting": WEIGHTINGS, "sampler": SAMPLERS,
           "spacing": SPACINGS, "sample_precision": SAMPLE_PRECISIONS, "precision": PRECISIONS,
           "latent_norm": LATENT_NORMS, "lr_schedule": ("constant", "cosine"), "bad_images": ("error", "skip"),
           "reconstruction": RECONSTRUCTION_LOSSES, "class_embedding": CLASS_EMBEDDINGS,
           "upsample": UPSAMPLES}
# Fields whose automatic value (see `_probe_values`) would not show the effect, or that have none.
VALUES: dict[str, list] = {
    "dataset": ["mnist"], "data_root": ["<empty folder>"], "autoencoder": ["autoencoder-flowers128"],
    "imbalance": [2.0], "subset": [32], "max_minutes": [1e-6], "device": ["cuda"], "ema_decay": [0.05],  # below the EMA warm-up's 1/10
    "channel_mult": [(1, 1), (1, 2, 2)], "attention_resolutions": [(), (16,), (8, 16), (4,), (8, 8)],
    # aux_max_t 1: every sample gets the auxiliary terms (halving the default can miss all 16 draws of t: P = 0.12)
    "aux_max_t": [1.0],
    "aux_layers": [(0,), (0, 1), (7,), (1, 1)], "aux_net": ["classifier:fashion_mnist-32"],
    "perceptual_net": ["classifier:fashion_mnist-32-critic"], "eta": [0.5], "cfg": [1.0],
    "image_channels": [2], "num_classes": [4], "input_size": [8], "p_uncond": [0.5], "keep": [1],
    "lr_warmup": [1, 2],
    # issue 24: fine-tuning from a model of another resolution is refused; the evaluation's fields are refused
    # without an evaluation; eval_every acts on the "eval" base (20 samples at step 2, at 16 px without a judge: the
    # memorisation check alone), whose evaluation then runs at every step (tests/test_finetune.py: the judge's fields)
    "init_from": ["fashion_mnist-28-cpu"], "eval_every": [1], "eval_n": [20], "best_metric": ["accuracy", "recall"],
    "eval_classifier": ["fashion_mnist-32"], "augment": [0.5], "augment_dim": [12],
    # "auto" resolves, per machine, to one of the others (on a CPU without bf16 units it is the base's fp32)
    "precision": ["bf16", "fp16"], "sample_precision": ["bf16"],
}
# Fields only a scenario can show at work, each with the reason and the test that does.
EXEMPT = {
    "guidance_input": "set only by `largo distill` on its students, refused as a flag or override "
                      "(test_distill.py: the w input starts as the identity, and the student samples with it)",
    "download": "a permission to fetch a missing dataset: with the data on disk there is nothing to fetch, and "
                "fetching needs a network (test_data.py covers the missing-data message)",
    "max_bad_steps": "a guard that acts only on non-finite steps (test_reliability.py: "
                     "test_repeated_non_finite_steps_stop_the_run_with_the_last_good_checkpoint)",
}
# Fields walked from other bases: the auxiliary-loss ones with the losses on and the latent ones on a latent run
# (after the main base, where they are switched off and so refused); clip_x0 on an ε-model, whose x0 estimates
# leave [-1, 1] at high noise (a v-model's stay inside while it is young, so clipping them changes nothing).
SCENARIO = {"aux_net": ["run", "aux"], "aux_layers": ["run", "aux"], "aux_max_t": ["run", "aux"],
            "latent_norm": ["run", "latent"], "clip_x0": ["eps"],
            # EDM's own settings act on an EDM run (and are refused on the v-prediction base)
            "sigma_data": ["run", "edm"], "p_mean": ["run", "edm"], "p_std": ["run", "edm"],
            "loss_weighting": ["run", "edm"], "sigma_min": ["run", "edm"], "sigma_max": ["run", "edm"],
            # an evaluation of the base's 500 samples at every step would cost half a minute
            "eval_every": ["eval"]}
# Fields whose effect is how the trainer is built, not two steps of training (compiling takes a minute on a CPU).
BUILD_ONLY = {"compile"}


def _base(kind: str, tmp: Path) -> RunConfig | AutoencoderRunConfig:
    cfg = tiny_config(steps=2, checkpoint_every=1, log_every=1, keep=2, device="cpu", precision="fp32")
    cfg.data = dataclasses.replace(cfg.data, subset=64)
    cfg.sample = dataclasses.replace(cfg.sample, sample_precision="fp32")  # 4 ddim steps (tiny_config)
    if kind == "aux":
        cfg.diffusion = dataclasses.replace(cfg.diffusion, perceptual_weight=0.1, feature_match_weight=0.05,
                                            aux_net="classifier:fashion_mnist-32-critic")
    elif kind == "eps":
        cfg.diffusion = dataclasses.replace(cfg.diffusion, prediction="eps")
    elif kind == "edm":
        cfg.diffusion = dataclasses.replace(cfg.diffusion, prediction="edm", schedule="karras",
                                            loss_weighting="uniform")
    elif kind == "eval":
        cfg.train = dataclasses.replace(cfg.train, eval_every=2, eval_n=20)
    elif kind == "latent":
        folder = tmp / "folder"
        if not folder.is_dir():
            make_folder(folder)
        # the released flowers autoencoder (128 px, f = 4): 32×32 latents, so attention at 16 (32 → 16)
        cfg.data = dataclasses.replace(cfg.data, dataset=f"folder:{folder}", data_root="", resolution=128, subset=0,
                                       autoencoder="autoencoder-flowers128")
        cfg.model = dataclasses.replace(cfg.model, attention_resolutions=(16,))
    elif kind == "autoencoder":
        ae = AutoencoderRunConfig()
        ae.data = dataclasses.replace(cfg.data, hflip=True)
        ae.train = cfg.train
        ae.autoencoder = dataclasses.replace(ae.autoencoder, base_channels=32, channel_mult=(1, 2), num_res_blocks=1)
        ae.loss = dataclasses.replace(ae.loss, disc_start=1, disc_layers=1)
        return ae
    return cfg


EVAL_NUMBERS = ("accuracy", "fd", "recall", "memorised")  # what an in-training evaluation measured


def _tensors_digest(path: Path) -> str:
    h = hashlib.sha256()
    for name, t in sorted(load_file(str(path)).items()):
        h.update(name.encode())
        h.update(t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def _fingerprint(cfg, run: Path) -> str:
    """What a run does (see the module docstring), or `refused: <line>` for a one-line LargoError."""
    try:
        cfg = copy.deepcopy(cfg).validate()
        trainer = Trainer(cfg, run, progress=False)
        conv = next(p for p in trainer.net.parameters() if p.ndim == 4)
        built = [str(trainer.device), str(trainer.amp_dtype), type(trainer.model_fn).__name__,
                 conv.is_contiguous(memory_format=torch.channels_last), trainer.total_steps]
        if cfg.train.compile:  # the compiled model is built; running it takes a minute, so stop here
            return json.dumps(built)
        summary = trainer.fit()
    except LargoError as e:
        message = str(e)
        assert "\n" not in message, f"a refusal must be one line: {message!r}"
        return f"refused: {message}"
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    last = run / "checkpoints" / ckpts[-1]
    weights = [_tensors_digest(f) for f in sorted(last.glob("*.safetensors"))]
    log = [(r.get("step"), r.get("event"), [r.get(k) for k in EVAL_NUMBERS if r.get("event") == "eval"])
           for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]
    grids = [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()[:16]) for p in sorted((run / "samples").glob("*"))]
    # what else a run writes: post-hoc EMA snapshots (phema_every), the best checkpoint (eval_every)
    extra = sorted(p.name for p in (run / "phema").glob("*")) + sorted(p.name for p in (run / "checkpoints").glob("b*"))
    return json.dumps([built, ckpts, weights, log, grids, summary["step"], summary["stop_reason"], extra])


def _sections(kind: str) -> dict[str, type]:
    if kind == "autoencoder":
        return {k: v for k, v in AutoencoderRunConfig.sections().items() if k in ("autoencoder", "loss")}
    return RunConfig.sections()


def _probe_values(name: str, typ, base_value) -> list:
    if name in VALUES:
        return VALUES[name]
    if name in CHOICES:
        return [c for c in CHOICES[name] if c != base_value]
    if typ is bool:
        return [not base_value]
    if typ is int:
        return [base_value * 2 if base_value else 1]
    if typ is float:
        return [base_value / 2 if base_value else 0.5]
    return []


def _cases() -> list:
    cases = []
    for kind in ("run", "autoencoder"):
        for section, cls in _sections(kind).items():
            for name, typ in field_types(cls).items():
                if name in EXEMPT:
                    continue
                # a scenario's field: in the main base (where it is switched off), then in its scenario
                for k in [kind] if kind == "autoencoder" else SCENARIO.get(name, ["run"]):
                    base_value = getattr(getattr(_base(k, Path("/nonexistent")), section), name)
                    for value in _probe_values(name, typ, base_value):
                        cases.append(pytest.param(k, section, name, value, id=f"{k}-{section}.{name}={value}"))
    return cases


def test_every_field_is_walked():
    """A new field needs a probe value here (or an exemption with its reason); none is forgotten."""
    walked = {c.values[2] for c in _cases()}
    every = {n for kind in ("run", "autoencoder") for cls in _sections(kind).values() for n in field_types(cls)}
    assert every - walked - set(EXEMPT) == set()
    assert set(VALUES) | set(EXEMPT) | set(SCENARIO) <= every, "a probe names a field that no longer exists"


@pytest.fixture(scope="module")
def base_fingerprint(tmp_path_factory, data_root):
    cache: dict[str, str] = {}

    def get(kind: str) -> str:
        if kind not in cache:
            tmp = tmp_path_factory.mktemp(f"base-{kind}")
            cache[kind] = _fingerprint(_base(kind, tmp_path_factory.getbasetemp()), tmp / "run")
            assert not cache[kind].startswith("refused"), f"the {kind} base must train: {cache[kind]}"
        return cache[kind]

    return get


@pytest.mark.slow  # ~130 tiny trainings, half of the suite without the end-to-end tests: `make test` walks them
@pytest.mark.parametrize("kind,section,name,value", _cases())
def test_a_setting_takes_effect_or_is_refused(base_fingerprint, tmp_path, tmp_path_factory, kind, section, name,
                                              value):
    if value == "<empty folder>":
        value = str(tmp_path / "empty")
        Path(value).mkdir()
    base = base_fingerprint(kind)  # first: a base that does not train would make every refusal meaningless
    cfg = _base(kind, tmp_path_factory.getbasetemp())
    setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{name: value}))
    got = _fingerprint(cfg, tmp_path / "run")
    print(f"{kind}: {section}.{name} = {value!r}: {got if got.startswith('refused') else 'changed'}")  # -s shows
    assert got.startswith("refused") or got != base, \
        f"{section}.{name} = {value!r} was accepted and changed nothing the run does"


@pytest.mark.parametrize("argv,needle", [
    (["--channel-mult", "1,,2"], "empty item"),
    (["--channel-mult", "1,2,"], "empty item"),
    (["--image-channels", "3"], "filled from the dataset"),
    (["--num-classes", "4"], "filled from the dataset"),
    (["--attention-resolutions", "5"], "never reached"),
    (["--aux-layers", "1,1", "--aux-net", "classifier:x", "--perceptual-weight", "1"], "duplicate"),
    (["--min-snr-gamma", "3"], "min_snr"),
    (["--sampler", "dpmpp2m", "--eta", "0.5"], "eta applies only to the ddim sampler"),
])
def test_train_flags_that_would_do_nothing_are_one_line_errors(capsys, tmp_path, argv, needle):
    from largo.cli import main

    code = main(["train", "--run-dir", str(tmp_path / "run"), "--steps", "1", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_finished_runs_config_loads_even_with_settings_now_refused(tmp_path, data_root):
    """Refusing values that take no effect guards new runs; a trained run saved with one (here an attention side
    its network never reaches, as the flowers128 preset once had) still samples."""
    from largo.cli import main

    Trainer(tiny_config(steps=1), tmp_path / "run", progress=False).fit()
    meta_path = next((tmp_path / "run" / "checkpoints").glob("step_*/meta.json"))
    meta = json.loads(meta_path.read_text())
    meta["config"]["model"]["attention_resolutions"] = [8, 2]  # 2 is never reached at 16 px with two levels
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LargoError, match="never reached"):
        RunConfig.from_dict(meta["config"]).validate()
    assert main(["sample", str(tmp_path / "run"), "--n", "1", "--steps", "2", "--out", str(tmp_path / "s"),
                 "--device", "cpu"]) == 0
