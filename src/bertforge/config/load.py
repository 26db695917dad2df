"""Load a YAML file, merge ``key=value`` command-line overrides, and check it against a schema."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bertforge.config.schema import TrainConfig, config_notices
from bertforge.config.validate import from_dict
from bertforge.errors import ConfigError, UserError

T = TypeVar("T")
log = logging.getLogger(__name__)


def parse_overrides(overrides: Sequence[str]) -> dict:
    """Parse ``a.b=1`` overrides into a nested dict; values are read as YAML (``[1,2]``, ``null``)."""
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise UserError(f"override {bad[0]!r} is not of the form key=value (e.g. max_duration=100ba)")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=False)
    except OmegaConfBaseException as err:
        raise UserError(f"could not parse overrides {list(overrides)}: {err}") from None


def apply_overrides(base, overrides: Sequence[str]) -> None:
    """Apply ``key=value`` overrides to the loaded YAML ``base`` in order. Keys are dotted paths; list items are
    addressed by index (``phases.1.max_seq_len=512`` or ``phases[1].max_seq_len=512``); mappings merge."""
    parse_overrides(overrides)  # checks the form and the values of all of them first
    for item in overrides:
        key, text = item.split("=", 1)
        value = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]), resolve=False)["value"]
        try:
            OmegaConf.update(base, key, value, merge=True)
        except (OmegaConfBaseException, TypeError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise UserError(f"override {item!r}: cannot apply it to the YAML ({first})") from None


def load_raw(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read ``path`` (YAML), merge the overrides, resolve ``${...}`` interpolations; return a plain dict."""
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}; pass the path of a YAML file, e.g. yamls/quickstart/")
    try:
        base = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and OmegaConf errors alike: show the parser's message
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not valid YAML: {first}") from None
    if not isinstance(OmegaConf.to_container(base), dict):
        raise UserError(f"{path}: the top level must be a mapping of keys")
    apply_overrides(base, overrides)
    try:
        return OmegaConf.to_container(base, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(getattr(err, "full_key", "") or "", f"cannot resolve interpolation: {err.msg}") from None


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (), schema: type[T] = TrainConfig) -> T:
    """Load and validate a config file into ``schema`` (a dataclass); errors name the bad key. For a
    :class:`TrainConfig`, keys that are accepted but deliberately not used are each said in one log line."""
    raw = load_raw(path, overrides)
    cfg = from_dict(schema, raw)
    if isinstance(cfg, TrainConfig):
        for note in config_notices(raw, cfg):
            log.warning("%s", note)
    return cfg
