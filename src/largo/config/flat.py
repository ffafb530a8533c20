"""Flat field names, as the CLI flags and sweep configs write them (`--base-channels 32`, `base_channels`)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from largo.config.run import FILLED_FIELDS, RunConfig, SectionedConfig, coerce_value, field_types
from largo.errors import LargoError


def field_sections(config_cls: type[SectionedConfig] = RunConfig) -> dict[str, tuple[str, Any]]:
    """{field name: (section, annotated type)} over every section (field names are unique across sections)."""
    return {name: (section, typ) for section, cls in config_cls.sections().items()
            for name, typ in field_types(cls).items()}


def check_overrides(d: dict[str, Any], where: str, sections: tuple[str, ...] | None = None,
                    config_cls: type[SectionedConfig] = RunConfig) -> dict[str, Any]:
    """{field: value} with every name and value type checked against the config (flat names, as the flags)."""
    fields = field_sections(config_cls)
    out = {}
    for k, v in d.items():
        if k not in fields or (sections and fields[k][0] not in sections):
            valid = sorted(n for n, (s, _) in fields.items() if not sections or s in sections)
            raise LargoError(f"unknown {where} field {k!r}; valid: {', '.join(valid)}")
        if k in FILLED_FIELDS:
            raise LargoError(f"{k} is filled from the dataset (and the autoencoder, or by `largo distill`) when a "
                             f"run starts; it cannot be set")
        out[k] = coerce_value(k, v, fields[k][1])
    return out


def with_overrides(cfg: SectionedConfig, overrides: dict[str, Any]) -> SectionedConfig:
    """A copy of `cfg` with flat {field: value} overrides applied (values already checked)."""
    fields = field_sections(type(cfg))
    cfg = dataclasses.replace(cfg)
    for k, v in overrides.items():
        section = fields[k][0]
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{k: v}))
    return cfg


# -- CLI flags from the dataclasses ----------------------------------------------------------------
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: Any, config_cls: type[SectionedConfig] = RunConfig) -> None:
    """Add one flag per config field; the default None means "not given, keep the config's value"."""
    defaults = config_cls()
    for section, section_cls in config_cls.sections().items():
        group = parser.add_argument_group(f"{section} config")
        for name, typ in field_types(section_cls).items():
            default = getattr(getattr(defaults, section), name)
            help_text = f"(default: {default})"
            if typ is bool:
                action = group.add_argument(_flag(name), dest=name, type=parse_bool, default=None, metavar="BOOL",
                                            help=help_text)
            elif typing.get_origin(typ) is tuple:
                action = group.add_argument(_flag(name), dest=name, type=_parse_int_tuple, default=None,
                                            metavar="A,B,..", help=help_text)
            else:
                action = group.add_argument(_flag(name), dest=name, type=typ, default=None, help=help_text)
            action.config_field = True  # its range lives in the config's validate()


def flag_overrides(args: Any, config_cls: type[SectionedConfig] = RunConfig) -> dict[str, Any]:
    """{field: value} for every config flag the user gave (flags left out are None)."""
    return {name: getattr(args, name) for name in field_sections(config_cls) if getattr(args, name, None) is not None}


def parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _parse_int_tuple(text: str) -> tuple[int, ...]:
    """'1,2,4' → (1, 2, 4); '' → (); an empty item ('1,,2', '1,') is refused rather than dropped."""
    text = text.strip()
    if not text:
        return ()
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}: give integers separated by commas")
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers (e.g. 1,2,4)") from None
