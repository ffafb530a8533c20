import json

import pytest

from largo.config import PRESETS, RunConfig, preset_config
from largo.errors import LargoError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_round_trip_through_json(name):
    cfg = preset_config(name).validate()
    again = RunConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


@pytest.mark.parametrize("section,key,value,needle", [
    ("train", "lr", "fast", "train.lr must be float"),
    ("train", "steps", 1.5, "train.steps must be int"),
    ("data", "hflip", 1, "data.hflip must be bool"),
    ("model", "channel_mult", [1, "2"], "list of integers"),
    ("model", "colour", 3, "unknown key"),
])
def test_wrong_types_and_keys_are_one_line_errors(section, key, value, needle):
    d = RunConfig().to_dict()
    d[section][key] = value
    with pytest.raises(LargoError, match=needle):
        RunConfig.from_dict(d)


@pytest.mark.parametrize("section,key,value,needle", [
    ("train", "lr", -1.0, "lr must be > 0"),
    ("diffusion", "p_uncond", 1.0, "p_uncond"),
    ("diffusion", "schedule", "quadratic", "unknown schedule"),
    ("model", "base_channels", 48, "multiple of 32"),
    ("data", "resolution", 36, "not divisible by 8"),
    ("sample", "sample_steps", 0, "sample_steps"),
    ("train", "epochs", 3, "steps 10000 and epochs 3 both set the run's length"),  # steps would be ignored
])
def test_out_of_range_values_are_rejected(section, key, value, needle):
    d = RunConfig().to_dict()
    d[section][key] = value
    with pytest.raises(LargoError, match=needle):
        RunConfig.from_dict(d).validate()
