"""SamplingOptions is the one vocabulary of sampling options: its field names are the sampling flags of every
command that samples, the sampling fields of a `largo serve` request, the keys of a sweep grid and of every
record. These tests enumerate each of them against the dataclass, so a new name cannot drift in."""

import argparse
import dataclasses

import pytest

from largo.cli import build_parser
from largo.cli.sampling_flags import ALL, add_sampling_flags, flag_label
from largo.config import RunConfig
from largo.sampling import SamplingOptions
from largo.sweep import GRID_KEYS

FIELDS = {f.name for f in dataclasses.fields(SamplingOptions)}
NOT_OPTIONS = {"weights"}  # which network samples (a load option), declared with the sampling flags


def _sampling_dests(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.option_strings} & (FIELDS | NOT_OPTIONS)


def test_the_sampling_flags_are_the_fields_under_the_same_names():
    parser = argparse.ArgumentParser()
    add_sampling_flags(parser)
    flags = {a.dest: a.option_strings for a in parser._actions if a.option_strings and a.dest != "help"}
    assert set(flags) == FIELDS | NOT_OPTIONS == set(ALL)
    for name, options in flags.items():
        assert options == [flag_label(name)] == [f"--{name.replace('_', '-')}"]


@pytest.mark.parametrize("command", [("sample",), ("eval",), ("report",), ("viz", "grid"), ("viz", "trajectory"),
                                     ("viz", "cfg-sweep"), ("viz", "samplers"), ("viz", "histogram")])
def test_every_sampling_command_declares_only_field_named_flags(command):
    parser = build_parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    dests = _sampling_dests(parser)
    assert dests and dests <= FIELDS | NOT_OPTIONS
    for action in parser._actions:
        if action.dest in FIELDS:
            assert action.option_strings == [flag_label(action.dest)], (command, action.option_strings)


def test_the_serve_request_fields_are_fields_or_say_what_to_draw():
    pytest.importorskip("fastapi")
    from largo.serve.app import OPTION_FIELDS, GenerateRequest

    request = set(GenerateRequest.model_fields)
    assert set(OPTION_FIELDS) <= FIELDS
    assert request & FIELDS == set(OPTION_FIELDS)
    assert request - FIELDS == {"model", "classes", "per_class", "seed"}


def test_the_sweep_grid_keys_are_fields():
    assert set(GRID_KEYS) == (FIELDS - {"cfg_interval", "guide_with"}) | NOT_OPTIONS


def test_the_record_is_to_dict_and_resolve_takes_every_field():
    run = RunConfig()
    run.model = dataclasses.replace(run.model, num_classes=10)
    options = SamplingOptions.resolve(run, **{name: None for name in FIELDS})
    assert set(options.to_dict()) == FIELDS
    assert (options.steps, options.cfg, options.precision) == (run.sample.sample_steps, run.sample.cfg,
                                                               run.sample.sample_precision)
    assert SamplingOptions.resolve(run, steps=3, cfg=2.5, precision="fp32").to_dict() == {
        **options.to_dict(), "steps": 3, "cfg": 2.5, "precision": "fp32"}


def test_eta_is_refused_for_a_sampler_that_ignores_it_and_not_carried_to_one():
    """eta only changes DDIM: given with another sampler (named or the run's) it is one line, never silently
    ignored; a run saved with a DDIM eta sampled with another sampler does not carry that eta over."""
    from largo.errors import LargoError

    run = RunConfig()
    run.model = dataclasses.replace(run.model, num_classes=10)
    assert run.sample.sampler != "ddim"
    for given in ({"eta": 0.5}, {"sampler": "euler", "eta": 1.0}):
        with pytest.raises(LargoError, match=r"^--eta applies only to the ddim sampler \(--sampler is \w+\)$"):
            SamplingOptions.resolve(run, **given, label=flag_label)
    assert SamplingOptions.resolve(run, sampler="ddim", eta=0.5).eta == 0.5
    run.sample = dataclasses.replace(run.sample, sampler="ddim", eta=0.5)
    assert SamplingOptions.resolve(run).eta == 0.5
    assert SamplingOptions.resolve(run, sampler="dpmpp2m").eta == 0.0


def test_the_flags_take_the_vocabulary_without_loading_torch():
    """The CLI declares its flags from SamplingOptions, yet `largo --help` still starts without torch."""
    import subprocess
    import sys

    code = ("import sys, largo.cli; largo.cli.build_parser(); "
            "assert 'torch' not in sys.modules, 'the parser loaded torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_generate_images_takes_every_option_by_its_name():
    """`cfg` is a sampling option, so the run config is not a keyword that an override could collide with."""
    import dataclasses

    import torch

    from largo.config import preset_config
    from largo.models import build_unet
    from largo.sampling import generate_images

    run_cfg = preset_config("demo")
    run_cfg.model = dataclasses.replace(run_cfg.model, image_channels=1, num_classes=10, channel_mult=(1, 2),
                                        attention_resolutions=())
    run_cfg.data = dataclasses.replace(run_cfg.data, resolution=8)
    net = build_unet(run_cfg.model, 8)
    guided = generate_images(net, run_cfg, torch.tensor([1, 2]), sampler="ddim", steps=2, cfg=3.0, device="cpu")
    plain = generate_images(net, run_cfg, torch.tensor([1, 2]), sampler="ddim", steps=2, cfg=1.0, device="cpu")
    assert guided.shape == (2, 1, 8, 8) and guided.dtype == torch.uint8 and plain.shape == guided.shape
