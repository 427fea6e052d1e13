"""FedTextGrad: federated prompt optimization with textual gradients."""

from fedtextgrad.config import ExperimentConfig, load_config
from fedtextgrad.errors import (
    ConfigError,
    DataError,
    EngineError,
    FedTextGradError,
    RunStateError,
)
from fedtextgrad.experiment import Results, run, run_async

__all__ = [
    "ConfigError",
    "DataError",
    "EngineError",
    "ExperimentConfig",
    "FedTextGradError",
    "Results",
    "RunStateError",
    "load_config",
    "run",
    "run_async",
]
__version__ = "0.1.0"
