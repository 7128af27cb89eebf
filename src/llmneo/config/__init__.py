"""One typed, documented config tree for every stage of llmneo (schema, loading, reference page)."""

from llmneo.config.loading import apply_overrides, flatten, load_config, save_config, validate_config
from llmneo.config.schema import (
    CacheConfig,
    Config,
    ConfigError,
    DataConfig,
    ExportConfig,
    LoraSettings,
    LossConfig,
    ModelConfig,
    ServeConfig,
    StudentConfig,
    TeacherConfig,
    TrackingConfig,
    TrainSettings,
    default_data_dir,
)

__all__ = [
    "CacheConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ExportConfig",
    "LoraSettings",
    "LossConfig",
    "ModelConfig",
    "ServeConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrackingConfig",
    "TrainSettings",
    "apply_overrides",
    "default_data_dir",
    "flatten",
    "load_config",
    "save_config",
    "validate_config",
]
