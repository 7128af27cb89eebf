"""The teacher as a model to run: the tuned folder, the configured model itself, or its ONNX export.

Only the cache stage and the evaluate stage run the teacher; a run whose logits are all cached never loads it.
A live teacher runs in eval mode under `inference_mode` (inside the Predictor).
"""

from __future__ import annotations

from pathlib import Path

from llmneo.config import Config
from llmneo.data import LabeledTexts
from llmneo.inference import Predictor
from llmneo.modelfolder import has_model_folder
from llmneo.modelfolder.sources import model_identity, resolve_model_source
from llmneo.modelfolder.weights import pick_device
from llmneo.teacher.tune import teacher_folder
from llmneo.training.models import build_model, load_causal_lm

__all__ = ["is_prompted", "load_live_teacher", "prompt_signature", "prompted_teacher", "teacher_source"]


def teacher_source(config: Config) -> tuple[str, str | None]:
    """Where the teacher's weights are: the tuned folder, or the configured model itself."""
    if config.teacher.finetune:
        folder = teacher_folder(config)
        if not has_model_folder(folder):
            raise FileNotFoundError(f"{folder}: no tuned teacher; run `llmneo teacher --config ...` first")
        return str(folder), None
    return resolve_model_source(config.teacher.name_or_path), config.teacher.gguf_file


def is_prompted(config: Config) -> bool:
    """An LLM read through a prompt and label words, not tuned: `teacher.kind: verbalizer`, `finetune: false`."""
    return config.teacher.kind == "verbalizer" and not config.teacher.finetune


def load_live_teacher(config: Config, for_cache: bool = False, labelled: LabeledTexts | None = None) -> Predictor:
    """The teacher as a Predictor (or a PromptedTeacher, with the same methods); for caching, through the backend
    `cache.backend` names. `labelled`: the training labels a prompted teacher draws shots and fits calibration on."""
    if for_cache and config.cache.backend == "onnx":
        return _onnx_teacher(config)
    precision = config.cache.mixed_precision if for_cache else "no"
    if is_prompted(config):
        return prompted_teacher(config, labelled, precision)
    if config.teacher.finetune:
        return Predictor.load(teacher_folder(config), device=config.teacher.device, mixed_precision=precision)
    loaded = build_model(config.teacher, config.data.labels)
    loaded.model.eval()
    meta = {"labels": config.data.labels, "kind": loaded.kind, "template": config.teacher.template,
            "max_length": config.teacher.max_length, "base_model": config.teacher.name_or_path}
    return Predictor.from_model(loaded.model, loaded.tokenizer, meta, mixed_precision=precision)


def prompted_teacher(config: Config, labelled: LabeledTexts | None, mixed_precision: str = "no"):
    """The LLM, its prompt (shots drawn from `labelled`), its label words, calibrated as configured."""
    from llmneo.modelfolder import load_tokenizer
    from llmneo.teacher.prompted import PromptedTeacher, pick_shots

    teacher, labels = config.teacher, config.data.labels
    source = resolve_model_source(teacher.name_or_path)
    tokenizer = load_tokenizer(source, teacher.gguf_file)
    words = teacher.label_words or [f" {name}" for name in labels]
    if len(words) != len(labels):
        raise ValueError(f"teacher.label_words has {len(words)} entries for {len(labels)} labels")
    words = [[word] if isinstance(word, str) else word for word in words]
    shots = []
    if teacher.shots:
        if labelled is None or len(labelled) == 0:
            raise ValueError("teacher.shots: the prompt's examples come from the training labels, and there are none")
        shots = pick_shots(labelled, teacher.shots, len(labels), config.data.seed)
    model = load_causal_lm(teacher, source).to(pick_device(teacher.device))
    prompted = PromptedTeacher(model, tokenizer, labels, words, teacher.template, teacher.instruction,
                               teacher.answer_prefix, teacher.chat, shots, teacher.max_length, mixed_precision)
    fit_rows = None
    if labelled is not None and teacher.calibration == "fit":
        used = {text for text, _ in shots}
        fit_rows = labelled.subset([i for i, text in enumerate(labelled.texts) if text not in used])
    print(f"[teacher] {teacher.name_or_path} prompted ({teacher.shots} shots per class, calibration "
          f"{teacher.calibration}); the prompt before each text is {len(prompted.prefix_ids)} tokens, cached once")
    return prompted.calibrate(teacher.calibration, fit_rows)


def prompt_signature(config: Config) -> str:
    """Everything a prompted teacher's logits depend on besides its weights and the data: the cache key's part."""
    import json

    teacher = config.teacher
    return json.dumps({"template": teacher.template, "instruction": teacher.instruction, "answer_prefix":
                       teacher.answer_prefix, "chat": teacher.chat, "label_words": teacher.label_words,
                       "shots": teacher.shots, "calibration": teacher.calibration, "seed": config.data.seed},
                      sort_keys=True)


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
