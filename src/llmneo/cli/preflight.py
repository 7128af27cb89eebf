"""Check a whole run before any work starts: config, data paths, model paths, output folders.

A mistyped model path used to cost a minute of hub retries and a 260-line traceback about the internet;
a missing data folder left a run folder and two FAILED MLflow runs behind. Here every such mistake is
one line naming the key, the value and where it was looked for, and nothing is created when one is found.

Model paths: a value that is a local folder is used as one; a relative path is looked up from the
working folder, then from the config file's folder. A value that looks like a path (`./x`, `/x`, `a/b/c`)
and is not there is an error. A hub id (`org/name`) is allowed only when the hub can be reached: offline
(`HF_HUB_OFFLINE=1`, as here) it must already be in the local Hugging Face cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from llmneo.config import Config, ConfigError
from llmneo.config.schema import DATA_DIR_ENV, ModelConfig
from llmneo.modelfolder.sources import resolve_model_source

__all__ = ["check_model_source", "hub_offline", "preflight"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")  # org/name, as the hub spells repository ids
_SPECIAL = ("pkg:", "run:")


def hub_offline() -> bool:
    """Offline by the environment (`HF_HUB_OFFLINE=1`), or because the hub's name does not resolve within
    2 s: then the variable is set for this process, so no library spends a minute retrying it."""
    if any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes")
           for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    if _resolves("huggingface.co"):
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    return True


def _resolves(host: str, timeout_s: float = 2.0) -> bool:
    import socket
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as Timeout

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return bool(pool.submit(socket.getaddrinfo, host, 443).result(timeout=timeout_s))
    except (OSError, Timeout):
        return False
    finally:
        pool.shutdown(wait=False)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def check_model_source(key: str, value: str, config_dir: Path | None) -> str:
    """The value to load `key` from: a local folder (absolute when it was found beside the config file), a
    `pkg:`/`run:` source, or a hub id the hub can serve. Raises ConfigError naming what was tried."""
    if value.startswith(_SPECIAL):
        if value.startswith("pkg:"):
            try:
                resolve_model_source(value)
            except FileNotFoundError as error:
                raise ConfigError(f"{key}: {error}") from None
        return value
    path = Path(value).expanduser()
    if path.exists():
        return value
    tried = [Path.cwd()]
    if not path.is_absolute() and config_dir is not None and config_dir.resolve() != Path.cwd().resolve():
        beside = config_dir / path
        if beside.exists():
            return str(beside.resolve())
        tried.append(config_dir.resolve())
    looked = " or ".join(str(folder) for folder in tried)
    if not _HUB_ID.match(value):
        raise ConfigError(f"{key}: {value!r} does not exist (looked in {looked})")
    if hub_offline() and not _in_hub_cache(value):
        raise ConfigError(f"{key}: {value!r} is not a folder (looked in {looked}), and as a hub id it is not in the "
                          "local Hugging Face cache while the hub cannot be reached")
    return value


def _check_gguf(key: str, model: ModelConfig, source: str) -> None:
    if model.gguf_file and not source.startswith("run:"):
        folder = Path(resolve_model_source(source))
        if folder.is_dir() and not (folder / model.gguf_file).is_file():
            raise ConfigError(f"{key}.gguf_file: {model.gguf_file!r} is not in {folder}")


def _check_models(config: Config, config_dir: Path | None) -> Config:
    updates = {}
    for role in ("teacher", "student"):
        model: ModelConfig = getattr(config, role)
        if role == "student" and model.name_or_path == "run:teacher" and not config.teacher.finetune:
            raise ConfigError("student.name_or_path: run:teacher needs a tuned teacher (teacher.finetune: true)")
        source = check_model_source(f"{role}.name_or_path", model.name_or_path, config_dir)
        _check_gguf(role, model, source)
        if source != model.name_or_path:
            updates[role] = model.model_copy(update={"name_or_path": source})
    return config.model_copy(update=updates) if updates else config


def _check_data(config: Config) -> None:
    data = config.data
    if data.source == "glue_dir":
        folder = Path(data.glue_dir)
        missing = [name for name in ("train.tsv", "dev.tsv") if not (folder / name).is_file()]
        if missing:
            if "glue_dir" in data.model_fields_set:
                origin = "data.glue_dir"
            elif os.environ.get(DATA_DIR_ENV):
                origin = f"data.glue_dir (from ${DATA_DIR_ENV})"
            else:
                origin = f"data.glue_dir (the default; set ${DATA_DIR_ENV} or data.glue_dir)"
            raise ConfigError(f"{origin}: {folder} has no {' or '.join(missing)} (looked from {Path.cwd()})")
    elif data.source == "files":
        for key in ("train_file", "eval_file"):
            value = getattr(data, key)
            if value and not Path(value).is_file():
                raise ConfigError(f"data.{key}: {value} does not exist (looked from {Path.cwd()})")
    if config.augment.enabled and config.augment.file and not Path(config.augment.file).is_file():
        raise ConfigError(f"augment.file: {config.augment.file} does not exist (looked from {Path.cwd()})")


def _check_writable(key: str, value: str) -> None:
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}: {value} exists and is not a folder")
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"{key}: {value} cannot be created ({existing} is not writable)")


def preflight(config: Config, config_path: Path | None = None) -> Config:
    """The config with model paths resolved, or a ConfigError naming the first problem. Creates nothing."""
    config = _check_models(config, config_path.parent if config_path is not None else None)
    _check_data(config)
    _check_writable("output_dir", config.output_dir)
    _check_writable("cache.dir", config.cache.dir)
    if config.loss.modules or config.loss.terms is not None or config.loss.kind != "kl":
        from llmneo.losses import build_loss

        try:
            build_loss(config.loss.resolved_terms(), config.loss.temperature, config.loss.modules)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return config
