"""Every config key does something: each field of the config model is registered with the module
that reads it, and that module really reads it (an attribute access of that name in its source).

Adding a field without a reader fails here twice: it is not in READERS, and whatever module one
registers it with must read it. `serve` and `export`, which once were validated and ignored, are
also checked by behaviour (tests/config/test_config.py: `serve --config`, `export --config`).
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
from pathlib import Path

from pydantic import BaseModel, Field

from llmneo.config import Config, ServeConfig
from llmneo.config.reference import iter_fields
from llmneo.serve.settings import ServeSettings

_MODEL_FIELDS = {  # the same for teacher and student (ModelConfig), read where the model is built or trained
    "name_or_path": "llmneo.cli.preflight",
    "kind": "llmneo.training.models",
    "gguf_file": "llmneo.training.models",
    "template": "llmneo.training.trainer",
    "label_words": "llmneo.training.models",
    "dtype": "llmneo.training.models",
    "device": "llmneo.training.trainer",
    "load_in_4bit": "llmneo.training.models",
    "keep_layers": "llmneo.training.models",
    "ffn_width": "llmneo.training.models",
    "max_length": "llmneo.training.trainer",
    "trust_remote_code": "llmneo.training.models",
    "lora.enabled": "llmneo.training.trainer",
    "lora.r": "llmneo.training.models",
    "lora.alpha": "llmneo.training.models",
    "lora.dropout": "llmneo.training.models",
    "lora.target_modules": "llmneo.training.models",
    "lora.modules_to_save": "llmneo.training.models",
    "lora.merge": "llmneo.training.trainer",
    **{f"train.{name}": "llmneo.training.trainer" for name in (
        "epochs", "max_steps", "batch_size", "eval_batch_size", "gradient_accumulation_steps", "learning_rate",
        "weight_decay", "warmup_ratio", "lr_scheduler", "eval_steps", "logging_steps", "save_steps",
        "save_total_limit", "seed", "num_threads", "mixed_precision", "freeze_embeddings", "freeze_layers", "keep_best",
        "time_limit_minutes",
        "lr_over_time_limit", "time_limit_clock")},
}

READERS: dict[str, str] = {
    "name": "llmneo.config.schema",  # Config.run_dir
    "output_dir": "llmneo.config.schema",  # Config.run_dir
    **{f"data.{name}": "llmneo.data.labeled" for name in (
        "source", "glue_dir", "train_file", "eval_file", "text_column", "label_column", "labels", "hub_name",
        "hub_config", "hub_eval_split", "max_train_samples", "max_eval_samples", "seed", "skip_bad_rows",
        "validation_size", "dev_size")},
    **{f"teacher.{key}": module for key, module in _MODEL_FIELDS.items()},
    "teacher.finetune": "llmneo.teacher.live",
    **{f"teacher.{name}": "llmneo.teacher.live" for name in (
        "chat", "instruction", "answer_prefix", "shots", "calibration")},
    "teacher.train.max_train_samples": "llmneo.teacher.tune",
    **{f"student.{key}": module for key, module in _MODEL_FIELDS.items()},
    "student.train.max_train_samples": "llmneo.training.stage",
    **{f"loss.{name}": "llmneo.config.schema" for name in ("kind", "alpha", "hidden_weight", "hidden_layers", "terms")},
    "loss.temperature": "llmneo.distill.stage",
    "loss.modules": "llmneo.distill.stage",
    "cache.dir": "llmneo.cache.stage",
    "cache.batch_size": "llmneo.cache.stage",
    "cache.shard_size": "llmneo.cache.stage",
    "cache.backend": "llmneo.teacher.live",
    "cache.mixed_precision": "llmneo.teacher.live",
    "cache.quantize": "llmneo.teacher.live",
    "augment.enabled": "llmneo.transfer.stage",
    "augment.file": "llmneo.transfer.stage",
    **{f"augment.{name}": "llmneo.transfer.stage" for name in (
        "methods", "n_per_example", "max_rows", "p_mask", "p_replace", "replace_source", "neighbours", "ngram_min",
        "ngram_max", "seed", "rest_of_train")},
    "augment.teacher_labels": "llmneo.distill.stage",
    "tracking.enabled": "llmneo.tracking.tracker",
    "tracking.tracking_uri": "llmneo.tracking.tracker",
    "tracking.experiment": "llmneo.tracking.tracker",
    "tracking.registered_model_name": "llmneo.tracking.registry",
    "tracking.log_model": "llmneo.tracking.runlog",
    "tracking.log_system_metrics": "llmneo.tracking.tracker",
    "tracking.system_metrics_interval_s": "llmneo.tracking.tracker",
    **{f"export.{name}": "llmneo.inference.export" for name in (
        "format", "quantize", "opset", "min_agreement_fp32", "min_agreement_int8")},
    # serve.*: `llmneo serve --config` passes the section to ServeSettings; these modules read the setting
    "serve.host": "llmneo.serve.launch",
    "serve.port": "llmneo.serve.launch",
    "serve.backend": "llmneo.serve.service",
    "serve.max_texts": "llmneo.serve.routes.predict",
    "serve.max_text_chars": "llmneo.serve.routes.predict",
    "serve.max_batch_size": "llmneo.serve.service",
    "serve.max_wait_ms": "llmneo.serve.service",
    "serve.log_texts": "llmneo.serve.service",
}


@cache
def _attributes_read(module: str) -> frozenset[str]:
    """Names read as attributes (`x.name`) anywhere in a module's source."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    tree = ast.parse(Path(spec.origin).read_text())
    return frozenset(node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute))


def unread_fields(model: type[BaseModel] = Config, readers: dict[str, str] = READERS) -> list[str]:
    """Problems, one line each: a field with no registered reader, or whose reader never reads it."""
    problems = []
    keys = [key for key, *_ in iter_fields(model)]
    for key in keys:
        name = key.rsplit(".", 1)[-1]
        if key not in readers:
            problems.append(f"{key}: no module registered as its reader")
        elif name not in _attributes_read(readers[key]):
            problems.append(f"{key}: {readers[key]} never reads .{name}")
    problems += [f"{key}: registered, but the config has no such field" for key in readers if key not in keys]
    return problems


def test_every_config_field_is_read_by_its_registered_module():
    assert unread_fields() == []


def test_the_serve_section_is_a_subset_of_the_server_settings_with_the_same_defaults():
    """`llmneo serve --config` hands the section to ServeSettings; a key it lacked would be dropped."""
    for name, info in ServeConfig.model_fields.items():
        assert name in ServeSettings.model_fields, f"serve.{name} is no server setting"
        assert ServeSettings.model_fields[name].default == info.default, f"serve.{name}: defaults differ"


def test_a_field_nobody_reads_fails_the_check():
    """The check bites: `serve.no_such_setting`, validated but read by no code, is reported."""

    class Serve(ServeConfig):
        no_such_setting: int = Field(1, description="read by nobody")

    class WithUnreadField(Config):
        serve: Serve = Field(default_factory=Serve)

    assert unread_fields(WithUnreadField) == ["serve.no_such_setting: no module registered as its reader"]
    readers = {**READERS, "serve.no_such_setting": "llmneo.serve.service"}
    assert unread_fields(WithUnreadField, readers) == [
        "serve.no_such_setting: llmneo.serve.service never reads .no_such_setting"]
