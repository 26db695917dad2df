"""Config: typed schema, YAML + command-line loading, validation before any work starts."""

from bertforge.config.load import load_config, parse_overrides
from bertforge.config.schema import TrainConfig

__all__ = ["TrainConfig", "load_config", "parse_overrides"]
