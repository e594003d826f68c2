"""Typed experiment configuration: schema, YAML loading with overrides, validation before Ray starts."""

from f3ocus.config.load import flatten, load_config, to_dict
from f3ocus.config.schema import ConfigError, ExperimentConfig

__all__ = ["ConfigError", "ExperimentConfig", "load_config", "to_dict", "flatten"]
