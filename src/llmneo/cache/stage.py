"""The cache stage: the teacher's signals for every row a student learns from, computed once and stored.

Whether logits come from the on-disk cache or a live model is decided here, once; the trainer only
ever sees arrays. Gold rows, validation and dev share one cache; a transfer set has its own (keyed by its
content), so runs with and without it share the gold logits. Signals other than logits (pooled hidden
states, declared by a loss term) are cached by shard the same way.
"""

from __future__ import annotations

import time

import numpy as np

from llmneo.cache.store import CacheCorrupt, CachedLogits, CacheKey, LogitCache
from llmneo.config import Config
from llmneo.data import DataSplits, LabeledTexts
from llmneo.inference import Predictor
from llmneo.losses import TeacherSignal, build_loss
from llmneo.maths.metrics import classification_metrics, softmax
from llmneo.modelfolder.sources import model_identity
from llmneo.teacher.live import is_prompted, load_live_teacher, prompt_signature, teacher_source
from llmneo.tracking.runlog import log_stage_outputs
from llmneo.training.distributed import barrier, rank_and_world
from llmneo.training.stage import run_splits, stage_run, start_run_folder
from llmneo.transfer.sets import TransferSet
from llmneo.transfer.stage import load_transfer_set

__all__ = ["cache_for", "run_cache_stage", "teacher_logits", "teacher_pooled_signal"]


def cache_for(config: Config, splits: DataSplits, transfer: TransferSet | None = None,
              hidden_layers: tuple[int, ...] = (), dev_only: bool = False) -> LogitCache:
    source, gguf_file = teacher_source(config)
    key = CacheKey(teacher_id=model_identity(source, gguf_file), train_fingerprint=splits.train.fingerprint(),
                   dev_fingerprint=splits.dev.fingerprint(), kind=config.teacher.kind,
                   template=_template_key(config),
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


def _template_key(config: Config) -> str:
    """The prompt part of the key: a prompted teacher's whole prompt recipe, a tuned verbalizer's template."""
    if is_prompted(config):
        return prompt_signature(config)
    return config.teacher.template if config.teacher.kind == "verbalizer" else ""


class _LazyTeacher:
    """The live teacher, loaded on first use: a run whose logits are all cached never loads it."""

    def __init__(self, config: Config, labelled: LabeledTexts | None = None):
        self.config = config
        self.labelled = labelled  # a prompted teacher's shots and calibration come from the training labels
        self.predictor: Predictor | None = None

    def __call__(self, chunk, label: str) -> np.ndarray:
        if self.predictor is None:
            self.predictor = load_live_teacher(self.config, for_cache=True, labelled=self.labelled)
        return self.predictor.predict_logits(chunk, self.config.cache.batch_size, progress=label)


def teacher_logits(config: Config, splits: DataSplits, on_shard=None, transfer: TransferSet | None = None) -> CachedLogits:
    """Cached teacher logits for train and dev (and a transfer set), computing only what is missing.

    Gold and transfer logits live in two caches, so runs with and without a transfer set (the
    ablation's arms) share the gold one. At `loss.alpha` 0 no gold row is distilled, so the gold
    training rows are not run through the teacher (`train` is None) unless a cache already holds them.
    """
    teacher = _LazyTeacher(config, splits.train)
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
    if gold_logits_needed(config) or full.exists():
        return _cached(config, full, {"train": splits.train.texts, **_texts(evaluated)}, teacher, on_shard,
                       evaluated)
    dev_only = cache_for(config, splits, dev_only=True)
    if not dev_only.exists():
        print("[cache] no loss term distils the gold rows (their weight is 0): the teacher skips them and "
              f"reads {' and '.join(evaluated)}")
    return _cached(config, dev_only, _texts(evaluated), teacher, on_shard, evaluated)


def _texts(parts: dict[str, LabeledTexts]) -> dict[str, list[str]]:
    return {split: part.texts for split, part in parts.items()}


def _cached(config: Config, cache: LogitCache, texts: dict[str, list[str]], teacher: _LazyTeacher, on_shard,
            evaluated: dict[str, LabeledTexts] | None = None) -> CachedLogits:
    """`evaluated`: the labelled splits (dev, validation) whose teacher metrics the cache records."""
    _, world_size = rank_and_world()
    with cache.exclusive(enabled=world_size == 1):
        return _cached_locked(config, cache, texts, teacher, on_shard, evaluated)


def _cached_locked(config: Config, cache: LogitCache, texts: dict[str, list[str]], teacher: _LazyTeacher, on_shard,
                   evaluated: dict[str, LabeledTexts] | None) -> CachedLogits:
    """Under the cache's lock: a cache another process finished while this one waited is read, not rebuilt."""
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
        if summary and config.cache.mixed_precision != "no":  # why it can differ from the teacher stage's fp32 figure
            summary += f" (on its {config.cache.mixed_precision} logits, as cached)"
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


def teacher_pooled_signal(config: Config, splits: DataSplits, signal: TeacherSignal,
                          transfer: TransferSet | None = None) -> np.ndarray:
    """(N_train [+ N_transfer], L * H) teacher hidden states at `signal.layers`, mean-pooled, cached by shard
    like the logits (gold and transfer apart). Always through PyTorch: an ONNX graph exposes logits alone."""
    from llmneo.teacher.signals import teacher_pooled_states

    layers = list(signal.layers)
    torch_config = config.model_copy(update={"cache": config.cache.model_copy(update={"backend": "torch"})})
    predictor: Predictor | None = None

    def compute(chunk, label: str) -> np.ndarray:
        nonlocal predictor
        predictor = predictor or load_live_teacher(torch_config, for_cache=True)
        return teacher_pooled_states(predictor.backend.model, predictor.encode, list(chunk), layers,
                                     config.cache.batch_size, config.cache.mixed_precision,
                                     label=label.replace("logits", f"hidden states {layers}"))

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


def gold_logits_needed(config: Config) -> bool:
    """Does a loss term distil the gold rows? If none does (`loss.alpha` 0), the teacher need not run on them."""
    return build_loss(config.loss.resolved_terms(), config.loss.temperature, config.loss.modules).reads_gold_logits()


def run_cache_stage(config: Config) -> CachedLogits:
    start_run_folder(config)
    splits = run_splits(config)
    transfer = load_transfer_set(config, splits.train)
    with stage_run(config, "cache") as tracker:
        started = time.perf_counter()
        cached = teacher_logits(config, splits, transfer=transfer)
        tracker.log_metrics({f"teacher_{k}": v for k, v in cached.teacher_dev_metrics.items()})
        tracker.log_metrics({"cache_seconds": time.perf_counter() - started})
        log_stage_outputs(tracker, config.run_dir)
    return cached
