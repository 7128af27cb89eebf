"""The teacher behind one interface: `teacher_logits` returns logits for train and dev.

Whether they come from the on-disk cache or a live model is decided here, once; the trainer only
ever sees arrays. A live teacher runs in eval mode under `inference_mode` (inside the Predictor).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from transformers import set_seed

from llmneo.config import Config, DataConfig, TeacherConfig
from llmneo.config.recipe import field_defaults, recipe_matches
from llmneo.data import DataSplits, LabeledTexts, load_splits
from llmneo.data.augment import TransferSet
from llmneo.inference import Predictor
from llmneo.maths.metrics import classification_metrics, softmax
from llmneo.modelfolder import has_model_folder
from llmneo.training.cache import CacheCorrupt, CachedLogits, CacheKey, LogitCache, model_identity
from llmneo.training.distributed import barrier, rank_and_world
from llmneo.training.models import build_model, resolve_model_source
from llmneo.training.trainer import TrainOutcome, fine_tune

__all__ = [
    "cache_for",
    "load_live_teacher",
    "prepare_teacher",
    "teacher_folder",
    "teacher_hidden_states",
    "teacher_logits",
    "teacher_recipe",
    "teacher_source",
]


def teacher_folder(config: Config) -> Path:
    return config.run_dir / "teacher"


def teacher_source(config: Config) -> tuple[str, str | None]:
    """Where the teacher's weights are: the tuned folder, or the configured model itself."""
    if config.teacher.finetune:
        folder = teacher_folder(config)
        if not has_model_folder(folder):
            raise FileNotFoundError(f"{folder}: no tuned teacher; run `llmneo teacher --config ...` first")
        return str(folder), None
    return resolve_model_source(config.teacher.name_or_path), config.teacher.gguf_file


def prepare_teacher(config: Config, callbacks=None, resume: bool = False) -> TrainOutcome | None:
    """Fine-tune the teacher on the training data; nothing to do when it is already a task classifier."""
    if not config.teacher.finetune:
        print(f"[teacher] {config.teacher.name_or_path} is used as is (teacher.finetune: false)")
        return None
    recipe = teacher_recipe(config)
    meta_path = teacher_folder(config) / "llmneo_model.json"
    if meta_path.is_file() and _same_teacher_recipe(json.loads(meta_path.read_text()).get("recipe"), recipe):
        print(f"[teacher] reusing the tuned teacher in {teacher_folder(config)} (same teacher and data config)")
        return None
    splits = load_splits(config.data, config.teacher.train.max_train_samples)
    set_seed(config.teacher.train.seed)  # the new head starts the same in every run
    loaded = build_model(config.teacher, config.data.labels)
    data = {"train": len(splits.train), "dev": len(splits.dev), "train_fingerprint": splits.train.fingerprint(),
            "dev_fingerprint": splits.dev.fingerprint()}
    if splits.validation is not None:
        data |= {"validation": len(splits.validation), "validation_fingerprint": splits.validation.fingerprint()}
    meta = {"role": "teacher", "labels": config.data.labels, "base_model": config.teacher.name_or_path,
            "run_name": config.name, "recipe": recipe, "data": data}
    return fine_tune(loaded, config.teacher, splits, teacher_folder(config), meta, callbacks=callbacks,
                     resume=resume)


def _same_teacher_recipe(saved: dict | None, current: dict) -> bool:
    defaults = {**field_defaults(TeacherConfig, "teacher."), **field_defaults(DataConfig, "data.")}
    return saved is not None and recipe_matches(saved, current, defaults)


def teacher_recipe(config: Config) -> dict:
    """What a tuned teacher depends on: a teacher folder made from the same recipe is reused, not retrained."""
    unread = {"skip_bad_rows"} | ({"max_train_samples"} if config.teacher.train.max_train_samples else set())
    data = config.data.model_dump(mode="json", exclude=unread)
    return {"teacher": config.teacher.model_dump(mode="json"), "data": data}


def load_live_teacher(config: Config, for_cache: bool = False) -> Predictor:
    """The teacher as a Predictor; for caching, through the backend `cache.backend` names."""
    if for_cache and config.cache.backend == "onnx":
        return _onnx_teacher(config)
    precision = config.cache.mixed_precision if for_cache else "no"
    if config.teacher.finetune:
        return Predictor.load(teacher_folder(config), device=config.teacher.device, mixed_precision=precision)
    loaded = build_model(config.teacher, config.data.labels)
    loaded.model.eval()
    meta = {"labels": config.data.labels, "kind": loaded.kind, "template": config.teacher.template,
            "max_length": config.teacher.max_length, "base_model": config.teacher.name_or_path}
    return Predictor.from_model(loaded.model, loaded.tokenizer, meta, mixed_precision=precision)


INT8_TEACHER_MIN_AGREEMENT = 0.995  # an int8 teacher must label dev as its PyTorch self does, nearly always


def _onnx_teacher(config: Config) -> Predictor:
    """The tuned teacher exported to ONNX once (kept in the run folder), for fast length-sorted caching."""
    from llmneo.inference.export import ExportRefused, default_export_dir, export_model

    if not config.teacher.finetune:
        raise ValueError("cache.backend: onnx exports the tuned teacher folder; it needs teacher.finetune: true")
    folder = teacher_folder(config)
    quantize = config.cache.quantize
    target = default_export_dir(folder, quantize)
    source_id = model_identity(str(folder))
    stamp = target / "source_identity.txt"
    if not (stamp.is_file() and stamp.read_text() == source_id):
        threshold = INT8_TEACHER_MIN_AGREEMENT if quantize == "int8" else None
        try:
            export_model(folder, quantize=quantize, out_dir=target, min_agreement=threshold,
                         data_path=_dev_path(config))
        except ExportRefused as refused:
            raise ValueError(f"cache.quantize: {quantize} teacher refused: {refused}") from None
        stamp.write_text(source_id)
    print(f"[cache] teacher through onnxruntime ({quantize if quantize != 'none' else 'fp32'}): {target}")
    return Predictor.load(target, backend="onnx")


def _dev_path(config: Config) -> Path | None:
    if config.data.source == "glue_dir":
        return Path(config.data.glue_dir) / "dev.tsv"
    return Path(config.data.eval_file) if config.data.eval_file else None


def cache_for(config: Config, splits: DataSplits, transfer: TransferSet | None = None,
              hidden_layers: tuple[int, ...] = (), dev_only: bool = False) -> LogitCache:
    source, gguf_file = teacher_source(config)
    key = CacheKey(teacher_id=model_identity(source, gguf_file), train_fingerprint=splits.train.fingerprint(),
                   dev_fingerprint=splits.dev.fingerprint(), kind=config.teacher.kind,
                   template=config.teacher.template if config.teacher.kind == "verbalizer" else "",
                   max_length=config.teacher.max_length, labels=tuple(config.data.labels),
                   transfer_fingerprint=transfer.fingerprint() if transfer is not None else "",
                   hidden_layers=tuple(hidden_layers), dev_only=dev_only,
                   validation_fingerprint=splits.validation.fingerprint() if splits.validation is not None else "")
    return LogitCache(config.cache.dir, key)


def _load_verified(cache: LogitCache) -> CachedLogits | None:
    if not cache.exists():
        return None
    try:
        return cache.load()
    except CacheCorrupt as error:
        print(f"[cache] {error}: rebuilding")
        cache.remove()
        return None


class _LazyTeacher:
    """The live teacher, loaded on first use: a run whose logits are all cached never loads it."""

    def __init__(self, config: Config):
        self.config = config
        self.predictor: Predictor | None = None

    def __call__(self, chunk, label: str) -> np.ndarray:
        if self.predictor is None:
            self.predictor = load_live_teacher(self.config, for_cache=True)
        return self.predictor.predict_logits(chunk, self.config.cache.batch_size, progress=label)


def teacher_logits(config: Config, splits: DataSplits, on_shard=None, transfer: TransferSet | None = None) -> CachedLogits:
    """Cached teacher logits for train and dev (and a transfer set), computing only what is missing.

    Gold and transfer logits live in two caches, so runs with and without a transfer set (the
    ablation's arms) share the gold one. At `loss.alpha` 0 no gold row is distilled, so the gold
    training rows are not run through the teacher (`train` is None) unless a cache already holds them.
    """
    teacher = _LazyTeacher(config)
    gold = _gold_logits(config, splits, teacher, on_shard)
    if transfer is not None:
        extra = _cached(config, cache_for(config, splits, transfer), {"transfer": transfer.texts}, teacher, on_shard)
        gold.transfer = extra.transfer
    return gold


def _gold_logits(config: Config, splits: DataSplits, teacher: _LazyTeacher, on_shard) -> CachedLogits:
    evaluated = {"dev": splits.dev}
    if splits.validation is not None:
        evaluated["validation"] = splits.validation
    full = cache_for(config, splits)
    if config.loss.alpha > 0 or full.exists():
        return _cached(config, full, {"train": splits.train.texts, **_texts(evaluated)}, teacher, on_shard,
                       evaluated)
    dev_only = cache_for(config, splits, dev_only=True)
    if not dev_only.exists():
        print("[cache] loss.alpha is 0: the gold rows are learnt by CE alone, so the teacher runs on "
              f"{' and '.join(evaluated)} only")
    return _cached(config, dev_only, _texts(evaluated), teacher, on_shard, evaluated)


def _texts(parts: dict[str, LabeledTexts]) -> dict[str, list[str]]:
    return {split: part.texts for split, part in parts.items()}


def _cached(config: Config, cache: LogitCache, texts: dict[str, list[str]], teacher: _LazyTeacher, on_shard,
            evaluated: dict[str, LabeledTexts] | None = None) -> CachedLogits:
    """`evaluated`: the labelled splits (dev, validation) whose teacher metrics the cache records."""
    cached = _load_verified(cache)
    if cached is not None:
        print(f"[cache] reusing teacher logits ({', '.join(texts)}) from {cache.folder}")
        return cached
    rank, world_size = rank_and_world()
    sizes = {split: len(values) for split, values in texts.items()}
    if cache.missing_shards(sizes, config.cache.shard_size):
        cache.build(teacher, texts, config.cache.shard_size, rank, world_size, on_shard)
    barrier()  # a no-op in a single process
    if rank == 0:
        metrics = _merge_with_metrics(cache, evaluated or {}, sizes, config)
    barrier()
    loaded = cache.load()
    if rank == 0:
        summary = ", ".join(f"teacher {split} accuracy {values['accuracy']:.4f}" for split, values in metrics.items())
        print(f"[cache] {summary or f'{sizes[next(iter(sizes))]:,} rows'}, stored in {cache.folder}")
    return loaded


def _merge_with_metrics(cache: LogitCache, evaluated: dict[str, LabeledTexts], sizes: dict[str, int],
                        config: Config) -> dict[str, dict]:
    """Merge the shards, recording the teacher's metrics on each labelled split (dev, validation)."""
    from safetensors.numpy import load_file

    shard_size = config.cache.shard_size
    metrics: dict[str, dict] = {}
    for split, part in evaluated.items():
        count = (sizes[split] + shard_size - 1) // shard_size
        logits = np.concatenate([load_file(cache.shard_path(split, i))["logits"] for i in range(count)])
        metrics[split] = classification_metrics(np.asarray(part.labels), softmax(logits))
    cache.merge(sizes, shard_size, {"teacher": config.teacher.name_or_path,
                                    **{f"teacher_{split}_metrics": values for split, values in metrics.items()}})
    return metrics


def teacher_hidden_states(config: Config, splits: DataSplits, layers: list[int],
                          transfer: TransferSet | None = None) -> np.ndarray:
    """(N_train [+ N_transfer], L * H) teacher hidden states at `layers`, mean-pooled, cached by shard like the
    logits (gold and transfer apart). Always through PyTorch: an ONNX graph exposes logits alone."""
    from llmneo.training.intermediate import teacher_pooled_states

    torch_config = config.model_copy(update={"cache": config.cache.model_copy(update={"backend": "torch"})})
    predictor: Predictor | None = None

    def compute(chunk, label: str) -> np.ndarray:
        nonlocal predictor
        predictor = predictor or load_live_teacher(torch_config, for_cache=True)
        return teacher_pooled_states(predictor.backend.model, predictor.encode, list(chunk), layers,
                                     config.cache.batch_size, config.cache.mixed_precision,
                                     progress=label.replace("logits", f"hidden states {layers}"))

    parts = [("train", cache_for(config, splits, hidden_layers=tuple(layers)), splits.train.texts)]
    if transfer is not None:
        parts.append(("transfer", cache_for(config, splits, transfer, tuple(layers)), transfer.texts))
    arrays = []
    for split, cache, texts in parts:
        cached = _load_verified(cache)
        if cached is None:
            cache.build(compute, {split: texts}, config.cache.shard_size)
            cache.merge({split: len(texts)}, config.cache.shard_size,
                        {"teacher": config.teacher.name_or_path, "hidden_layers": layers})
            cached = cache.load()
        print(f"[cache] teacher hidden states {layers} for {len(texts):,} {split} rows in {cache.folder}")
        arrays.append(getattr(cached, split))
    return np.concatenate(arrays)
