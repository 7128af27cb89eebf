"""The teacher behind one interface: `teacher_logits` returns logits for train and dev.

Whether they come from the on-disk cache or a live model is decided here, once; the trainer only
ever sees arrays. A live teacher runs in eval mode under `inference_mode` (inside the Predictor).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from transformers import set_seed

from llmneo.config import Config
from llmneo.data import DataSplits, load_splits
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
    "teacher_logits",
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
    splits = load_splits(config.data, config.teacher.train.max_train_samples)
    set_seed(config.teacher.train.seed)  # the new head starts the same in every run
    loaded = build_model(config.teacher, config.data.labels)
    meta = {"role": "teacher", "labels": config.data.labels, "base_model": config.teacher.name_or_path,
            "run_name": config.name, "data": {"train": len(splits.train), "dev": len(splits.dev),
                                              "train_fingerprint": splits.train.fingerprint(),
                                              "dev_fingerprint": splits.dev.fingerprint()}}
    return fine_tune(loaded, config.teacher, splits, teacher_folder(config), meta, callbacks=callbacks,
                     resume=resume)


def load_live_teacher(config: Config) -> Predictor:
    if config.teacher.finetune:
        return Predictor.load(teacher_folder(config), device=config.teacher.device)
    loaded = build_model(config.teacher, config.data.labels)
    loaded.model.eval()
    meta = {"labels": config.data.labels, "kind": loaded.kind, "template": config.teacher.template,
            "max_length": config.teacher.max_length, "base_model": config.teacher.name_or_path}
    return Predictor.from_model(loaded.model, loaded.tokenizer, meta)


def cache_for(config: Config, splits: DataSplits) -> LogitCache:
    source, gguf_file = teacher_source(config)
    key = CacheKey(teacher_id=model_identity(source, gguf_file), train_fingerprint=splits.train.fingerprint(),
                   dev_fingerprint=splits.dev.fingerprint(), kind=config.teacher.kind,
                   template=config.teacher.template if config.teacher.kind == "verbalizer" else "",
                   max_length=config.teacher.max_length, labels=tuple(config.data.labels))
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


def teacher_logits(config: Config, splits: DataSplits, on_shard=None) -> CachedLogits:
    """Cached teacher logits for `splits`, computing (only) what is missing with a live teacher."""
    cache = cache_for(config, splits)  # the key hashes the teacher's weight files: compute it once
    cached = _load_verified(cache)
    if cached is not None:
        print(f"[cache] reusing teacher logits from {cache.folder}")
        return cached
    rank, world_size = rank_and_world()
    texts = {"train": splits.train.texts, "dev": splits.dev.texts}
    sizes = {split: len(values) for split, values in texts.items()}
    if cache.missing_shards(sizes, config.cache.shard_size):
        predictor = load_live_teacher(config)
        compute = lambda chunk, label: predictor.predict_logits(chunk, config.cache.batch_size, progress=label)
        cache.build(compute, texts, config.cache.shard_size, rank, world_size, on_shard)
    barrier()  # a no-op in a single process
    if rank == 0:
        dev = _merge_with_metrics(cache, splits, sizes, config)
    barrier()
    loaded = cache.load()
    if rank == 0:
        print(f"[cache] teacher dev accuracy {dev['accuracy']:.4f}, stored in {cache.folder}")
    return loaded


def _merge_with_metrics(cache: LogitCache, splits: DataSplits, sizes: dict[str, int], config: Config) -> dict:
    from safetensors.numpy import load_file

    shard_size = config.cache.shard_size
    count = (sizes["dev"] + shard_size - 1) // shard_size
    dev_logits = np.concatenate([load_file(cache.shard_path("dev", i))["logits"] for i in range(count)])
    metrics = classification_metrics(np.asarray(splits.dev.labels), softmax(dev_logits))
    cache.merge(sizes, shard_size, {"teacher": config.teacher.name_or_path, "teacher_dev_metrics": metrics})
    return metrics
