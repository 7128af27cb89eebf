"""The teacher as a model to run: the tuned folder, the configured model itself, or its ONNX export.

Only the cache stage and the evaluate stage run the teacher; a run whose logits are all cached never loads it.
A live teacher runs in eval mode under `inference_mode` (inside the Predictor).
"""

from __future__ import annotations

from pathlib import Path

from llmneo.config import Config
from llmneo.inference import Predictor
from llmneo.modelfolder import has_model_folder
from llmneo.modelfolder.sources import model_identity, resolve_model_source
from llmneo.teacher.tune import teacher_folder
from llmneo.training.models import build_model

__all__ = ["load_live_teacher", "teacher_source"]


def teacher_source(config: Config) -> tuple[str, str | None]:
    """Where the teacher's weights are: the tuned folder, or the configured model itself."""
    if config.teacher.finetune:
        folder = teacher_folder(config)
        if not has_model_folder(folder):
            raise FileNotFoundError(f"{folder}: no tuned teacher; run `llmneo teacher --config ...` first")
        return str(folder), None
    return resolve_model_source(config.teacher.name_or_path), config.teacher.gguf_file


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
