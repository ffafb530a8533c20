"""Typed run configuration: one source of defaults that becomes the saved config *and* the CLI flags.

`run.py` holds the dataclass sections and `RunConfig` (load, save, validate); `choices.py` the names each choice
accepts; `checks.py` the sampling checks; `presets.py` the presets; `flat.py` the flat field names used by CLI
flags and sweep configs; `autoencoder.py` the autoencoder's architecture, loss and run configs.
"""

from largo.config.autoencoder import AutoencoderConfig, AutoencoderLossConfig, AutoencoderRunConfig
from largo.config.checks import check_sampling
from largo.config.choices import (LATENT_NORMS, PRECISIONS, PREDICTIONS, RERANK_CRITICS, SAMPLE_PRECISIONS, SAMPLERS,
                                  SCHEDULES, SPACINGS, SPLITS, WEIGHTINGS, WEIGHTS)
from largo.config.flat import (add_config_flags, check_overrides, field_sections, flag_overrides, parse_bool,
                               with_overrides)
from largo.config.presets import AUTOENCODER_PRESETS, PRESETS, preset_config
from largo.config.run import (SECTION_NAMES, SECTIONS, DataConfig, DiffusionConfig, ModelConfig, RunConfig,
                              SampleConfig, SectionedConfig, TrainConfig, coerce_value, field_types)

__all__ = ["AUTOENCODER_PRESETS", "LATENT_NORMS", "PRECISIONS", "PREDICTIONS", "PRESETS", "RERANK_CRITICS", "SAMPLERS",
           "SAMPLE_PRECISIONS", "SCHEDULES", "SECTIONS", "SECTION_NAMES", "SPACINGS", "SPLITS", "WEIGHTINGS", "WEIGHTS",
           "AutoencoderConfig", "AutoencoderLossConfig", "AutoencoderRunConfig", "DataConfig", "DiffusionConfig",
           "ModelConfig", "RunConfig", "SampleConfig", "SectionedConfig", "TrainConfig", "add_config_flags",
           "check_overrides", "check_sampling", "coerce_value", "field_sections", "field_types", "flag_overrides",
           "parse_bool", "preset_config", "with_overrides"]
