"""Fine-tune a teacher (cross-entropy) or distil a student (KD + CE) with Hugging Face `Trainer`.

Trainer brings what later scale-out needs without a rewrite: gradient accumulation, schedules,
checkpoints with optimizer/scheduler/RNG state and data position (`--resume`), and DDP, FSDP or
DeepSpeed under `accelerate launch`. The subclass overrides only `compute_loss` (DistillKit's
pattern); teacher logits arrive as a batch column, so the trainer never knows where they came from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import DataCollatorWithPadding, EvalPrediction, Trainer, TrainerCallback, TrainingArguments

from llmneo.atomic import atomic_dir
from llmneo.config import LossConfig, ModelConfig, StudentConfig, TeacherConfig, TrainSettings
from llmneo.data import DataSplits
from llmneo.maths.losses import distillation_loss, hidden_state_loss
from llmneo.maths.metrics import (
    agreement,
    classification_metrics,
    confusion,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from llmneo.maths.params import count_parameters
from llmneo.modelfolder.weights import LoadedModel, VerbalizerClassifier, save_model_folder
from llmneo.training.callbacks import (
    CheckpointCompleteMarker,
    DevLogitsByStep,
    TimeBudgetSchedule,
    WallClockLimit,
    budget_clock,
    last_complete_checkpoint,
)
from llmneo.training.intermediate import HiddenProjection, depth_and_width, pooled_states
from llmneo.training.models import apply_lora, freeze

__all__ = [
    "DistillationTrainer",
    "TrainOutcome",
    "evaluation_report",
    "fine_tune",
]


@dataclass
class TrainOutcome:
    model_dir: Path
    history: list[dict[str, Any]]
    final: dict[str, Any]
    dev_logits: np.ndarray  # (N_dev, C)
    parameters: dict[str, float]
    train_seconds: float
    meta: dict[str, Any] = field(default_factory=dict)


class DistillationTrainer(Trainer):
    """`Trainer` whose loss is KD + CE when the batch carries `teacher_logits`, CE otherwise."""

    def __init__(self, *args: Any, loss_config: LossConfig | None = None,
                 time_budget: tuple[float, float, Callable[[], float]] | None = None,
                 projection: HiddenProjection | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.loss_config = loss_config or LossConfig()
        self.projection = projection  # trained beside the student for the intermediate-layer term, never saved
        self._projection_in_optimizer = False
        self.time_budget = time_budget  # (seconds, warm-up share, clock) of a clock-driven schedule, or None
        self._component_sums: dict[str, torch.Tensor] = {}
        self._component_count = 0

    def _get_eval_sampler(self, eval_dataset):
        """Dev in its own order: Trainer length-groups evaluation too when training is length-grouped,
        which would misalign predictions with the dev labels and the teacher's dev logits.

        A private Trainer hook: TrainingArguments has no public switch that length-groups training
        batches but not evaluation ones."""
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """With a time budget, the schedule runs on the clock: warm-up over the first `warmup_ratio` of the
        minutes, then linear decay to zero at the cap. A step schedule cut by the cap would leave some
        arms of an ablation mid-decay and others finished, which is not a fair comparison."""
        if not self.time_budget:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            clock = TimeBudgetSchedule(*self.time_budget)
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, lambda _: clock())
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Checkpoints of a verbalizer (a plain module around an LM with tied embeddings) keep one copy of
        each shared tensor: safetensors refuses aliases, and loading (non-strict) re-ties them.

        A private Trainer hook: the public `save_model` has no way to hand it the de-aliased state dict
        for a module that is not a PreTrainedModel."""
        if state_dict is None and isinstance(self.model, VerbalizerClassifier):
            state_dict = _without_aliases(self.model.state_dict())
        super()._save(output_dir, state_dict)

    def create_optimizer(self, model=None):
        """The student's optimizer, plus the projection's weights (no decay) when the hidden term is on."""
        optimizer = super().create_optimizer(model)
        if self.projection is not None and not self._projection_in_optimizer:
            optimizer.add_param_group({"params": list(self.projection.parameters()), "weight_decay": 0.0})
            self._projection_in_optimizer = True
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_logits = inputs.pop("teacher_logits", None)
        teacher_hidden = inputs.pop("teacher_hidden", None)  # (B, L * H_teacher), training batches only
        labels = inputs.pop("labels")
        outputs = model(**inputs, **({"output_hidden_states": True} if teacher_hidden is not None else {}))
        if teacher_logits is None:
            loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels)
        else:
            parts = distillation_loss(outputs.logits, teacher_logits, labels, self.loss_config.temperature,
                                      self.loss_config.alpha, self.loss_config.kind)
            loss = parts.total
            if model.training:
                self._accumulate(kd_loss=parts.kd, ce_loss=parts.ce)
        if teacher_hidden is not None and self.projection is not None:
            layers = len(self.projection.maps)
            student = pooled_states(outputs.hidden_states, inputs["attention_mask"], range(layers))  # (B, L, H_s)
            hidden = hidden_state_loss(self.projection(student), teacher_hidden.view(len(labels), layers, -1))
            loss = loss + self.loss_config.hidden_weight * hidden
            self._accumulate(hidden_loss=hidden)
        return (loss, outputs) if return_outputs else loss

    def _accumulate(self, **components: torch.Tensor) -> None:
        # Summed as tensors: an .item() per micro-batch would force a device sync every step.
        for name, value in components.items():
            self._component_sums[name] = self._component_sums.get(name, 0) + value.detach()
        self._component_count += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._component_count:
            for name, total in self._component_sums.items():
                logs[name] = round(float(total) / self._component_count, 6)
            self._component_sums, self._component_count = {}, 0
        super().log(logs, start_time)


def _without_aliases(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    seen: set[int] = set()
    kept = {}
    for name, tensor in state_dict.items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            kept[name] = tensor
    return kept


def _texts(splits_texts: list[str], model_cfg: ModelConfig) -> list[str]:
    if model_cfg.kind == "verbalizer":
        return [model_cfg.template.format(text=t) for t in splits_texts]
    return splits_texts


def _dataset(loaded: LoadedModel, texts: list[str], labels: list[int], max_length: int,
             teacher_logits: np.ndarray | None, with_rows: bool = False) -> Dataset:
    columns: dict[str, Any] = {"text": texts, "labels": labels}
    if with_rows:  # the collator looks per-row arrays (teacher hidden states) up by this index
        columns["row"] = list(range(len(texts)))
    if teacher_logits is not None:
        if len(teacher_logits) != len(texts):
            raise ValueError(f"teacher logits have {len(teacher_logits)} rows for {len(texts)} texts")
        columns["teacher_logits"] = teacher_logits.tolist()
    dataset = Dataset.from_dict(columns)
    return dataset.map(lambda batch: loaded.tokenizer(batch["text"], truncation=True, max_length=max_length),
                       batched=True, remove_columns=["text"], desc="tokenising")


def _length_sorted(dataset: Dataset) -> tuple[Dataset, np.ndarray]:
    """Dev sorted by token count, and the order that did it. Evaluation pads each batch to its longest
    row, so sorted batches carry almost no padding: 2-3x faster on SST-2 dev, which the stage evaluates
    every `eval_steps`. Metrics do not depend on row order; logits are put back in dev order."""
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    return dataset.select(order), order


def _in_dev_order(sorted_logits: np.ndarray, order: np.ndarray) -> np.ndarray:
    logits = np.empty_like(sorted_logits)
    logits[order] = sorted_logits
    return logits


def _final_dev_logits(trainer: Trainer, recorder: DevLogitsByStep, dev_ds: Dataset,
                      keep_best: bool) -> tuple[np.ndarray, float | None]:
    """Dev logits and loss of the weights training ended with: from their evaluation during training when
    this process saw it (not after a resume, not across processes), else from one more pass."""
    evaluated = recorder.final(trainer.state, keep_best)
    if evaluated is not None and trainer.args.world_size <= 1:
        return evaluated
    prediction = trainer.predict(dev_ds, metric_key_prefix="eval")
    return _logits(prediction.predictions), prediction.metrics.get("eval_loss")


def _logits(predictions: np.ndarray | tuple) -> np.ndarray:
    """The logits of a Trainer prediction: the first output when the model returns several."""
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def _dev_once(trainer: Trainer, loaded: LoadedModel, splits: DataSplits, model_cfg: ModelConfig,
              dev_teacher_logits: np.ndarray | None) -> np.ndarray:
    """Dev logits of the final weights, in dev order: the one time dev is read when validation chooses."""
    dev_ds = _dataset(loaded, _texts(splits.dev.texts, model_cfg), splits.dev.labels, model_cfg.max_length,
                      dev_teacher_logits)
    dev_ds, order = _length_sorted(dev_ds)
    metrics_function, trainer.compute_metrics = trainer.compute_metrics, None  # it scores the validation split
    try:
        prediction = trainer.predict(dev_ds, metric_key_prefix="test")
    finally:
        trainer.compute_metrics = metrics_function
    return _in_dev_order(_logits(prediction.predictions), order)


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an evaluation report (no confusion matrix or calibration)."""
    keys = ("accuracy", "precision", "recall", "f1", "roc_auc", "agreement", "n")
    return {key: report[key] for key in keys if key in report}


class _Collator:
    """Dynamic padding for token columns; teacher logits are stacked alongside, and teacher hidden states
    looked up by row (kept as one numpy array: as a dataset column they would be lists of Python floats)."""

    def __init__(self, tokenizer: Any, teacher_hidden: np.ndarray | None = None):
        self.pad = DataCollatorWithPadding(tokenizer)
        self.teacher_hidden = teacher_hidden  # (N_train, L * H) or None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        teacher = [f.pop("teacher_logits") for f in features] if "teacher_logits" in features[0] else None
        rows = [f.pop("row") for f in features] if "row" in features[0] else None
        batch = self.pad(features)
        if teacher is not None:
            batch["teacher_logits"] = torch.tensor(teacher, dtype=torch.float32)
        if rows is not None and self.teacher_hidden is not None:
            batch["teacher_hidden"] = torch.from_numpy(self.teacher_hidden[rows])
        return batch


def _metrics_function(teacher_dev_logits: np.ndarray | None, recorder: DevLogitsByStep):
    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = _logits(prediction.predictions)
        recorder.record(logits)
        probs = softmax(logits)
        metrics = classification_metrics(prediction.label_ids, probs)
        metrics.pop("n")
        if teacher_dev_logits is not None:
            metrics["agreement"] = agreement(probs.argmax(axis=1), teacher_dev_logits.argmax(axis=1))
        return metrics

    return compute


def _training_arguments(settings: TrainSettings, checkpoint_dir: Path, model_cfg: ModelConfig) -> TrainingArguments:
    cuda = torch.cuda.is_available() and model_cfg.device != "cpu"
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type=settings.lr_scheduler,
        eval_strategy="steps",
        eval_steps=settings.eval_steps,
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        data_seed=settings.seed,
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
        label_names=["labels"],
        report_to="none",
        use_cpu=not cuda,
        bf16=settings.mixed_precision == "bf16" or (cuda and model_cfg.dtype == "bf16"),
        fp16=cuda and (settings.mixed_precision == "fp16" or model_cfg.dtype == "fp16"),
        dataloader_num_workers=0,
        load_best_model_at_end=settings.keep_best,
        metric_for_best_model="accuracy" if settings.keep_best else None,
        greater_is_better=True if settings.keep_best else None,
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
    )


def _projection(loaded: LoadedModel, teacher_hidden: np.ndarray | None, rows: int) -> HiddenProjection | None:
    """The width bridge of the intermediate-layer term, sized from the student and the cached states."""
    if teacher_hidden is None:
        return None
    if len(teacher_hidden) != rows:
        raise ValueError(f"teacher hidden states have {len(teacher_hidden)} rows for {rows} training texts")
    layers, width = depth_and_width(loaded.model)
    if teacher_hidden.shape[1] % layers:
        raise ValueError(f"teacher hidden states of width {teacher_hidden.shape[1]} do not split into {layers} layers")
    projection = HiddenProjection(layers, width, teacher_hidden.shape[1] // layers)
    return projection.to(next(loaded.model.parameters()).device)


def evaluation_report(labels: np.ndarray, logits: np.ndarray, teacher_logits: np.ndarray | None,
                      num_classes: int) -> dict[str, Any]:
    """Final dev figures: metrics, confusion matrix, agreement, and the fitted calibration temperature."""
    probs = softmax(logits)
    report: dict[str, Any] = classification_metrics(labels, probs)
    report["confusion_matrix"] = confusion(labels, probs.argmax(axis=1), num_classes)
    if teacher_logits is not None:
        report["agreement"] = agreement(probs.argmax(axis=1), teacher_logits.argmax(axis=1))
    temperature = fit_temperature(labels, logits)
    report["calibration"] = {"temperature": temperature,
                             "ece_before": expected_calibration_error(labels, probs),
                             "ece_after": expected_calibration_error(labels, softmax(logits, temperature))}
    return report


def fine_tune(loaded: LoadedModel, stage_cfg: TeacherConfig | StudentConfig, splits: DataSplits, output_dir: Path,
              meta: dict[str, Any], loss_config: LossConfig | None = None,
              train_teacher_logits: np.ndarray | None = None, dev_teacher_logits: np.ndarray | None = None,
              callbacks: list[TrainerCallback] | None = None, resume: bool = False,
              train_teacher_hidden: np.ndarray | None = None,
              validation_teacher_logits: np.ndarray | None = None) -> TrainOutcome:
    """Train `loaded` on `splits` and save it as a model folder at `output_dir` (atomically).

    The stage's config says everything else: `train` (the schedule), `lora` (adapters, merging) and
    the model settings (template, max length, device, dtype). With `train_teacher_logits` the loss
    is KD + CE (`loss_config`); without, plain cross-entropy. With `train_teacher_hidden` (N, L * H: the
    teacher's pooled states for each student layer, in order) the intermediate-layer term is added.
    With a validation split, evaluations during training (and keep_best) read it, and dev is evaluated
    once, on the weights training ended with: `final` holds dev, `final["validation"]` the validation figures.
    """
    model_cfg, settings, lora = stage_cfg, stage_cfg.train, stage_cfg.lora
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    torch.manual_seed(settings.seed)
    if lora.enabled:
        apply_lora(loaded, lora)
    freeze(loaded.model, settings.freeze_embeddings, settings.freeze_layers)
    parameters = count_parameters(loaded.model)
    print(f"[{meta.get('role', 'model')}] parameters: {parameters['total']:,.0f} total, "
          f"{parameters['trainable']:,.0f} trainable ({parameters['trainable_share']:.2%})")
    projection = _projection(loaded, train_teacher_hidden, len(splits.train))
    train_ds = _dataset(loaded, _texts(splits.train.texts, model_cfg), splits.train.labels, model_cfg.max_length,
                        train_teacher_logits, with_rows=projection is not None)
    selection = splits.selection
    selection_teacher_logits = dev_teacher_logits if splits.validation is None else validation_teacher_logits
    dev_ds = _dataset(loaded, _texts(selection.texts, model_cfg), selection.labels, model_cfg.max_length,
                      selection_teacher_logits)
    dev_ds, dev_order = _length_sorted(dev_ds)
    checkpoint_dir = output_dir.parent / f"checkpoints-{output_dir.name}"
    recorder = DevLogitsByStep()
    clock = budget_clock(settings.time_limit_clock)
    trainer = DistillationTrainer(
        model=loaded.model, args=_training_arguments(settings, checkpoint_dir, model_cfg),
        data_collator=_Collator(loaded.tokenizer, train_teacher_hidden), train_dataset=train_ds, eval_dataset=dev_ds,
        compute_metrics=_metrics_function(
            None if selection_teacher_logits is None else selection_teacher_logits[dev_order], recorder),
        callbacks=[CheckpointCompleteMarker(), recorder, *(callbacks or []),
                   *([WallClockLimit(settings.time_limit_minutes, clock)] if settings.time_limit_minutes else [])],
        loss_config=loss_config,
        time_budget=((settings.time_limit_minutes * 60, settings.warmup_ratio, clock)
                     if settings.time_limit_minutes and settings.lr_over_time_limit else None),
        projection=projection,
    )
    last = last_complete_checkpoint(checkpoint_dir) if resume else None
    if resume:
        print(f"[{meta.get('role', 'model')}] resuming from {last}" if last else "[resume] no checkpoint: from the start")
    started, clock_started = time.perf_counter(), clock()
    train_result = trainer.train(resume_from_checkpoint=last)
    train_seconds = time.perf_counter() - started
    budget_minutes = (clock() - clock_started) / 60
    sorted_logits, eval_loss = _final_dev_logits(trainer, recorder, dev_ds, settings.keep_best)
    selection_logits = _in_dev_order(sorted_logits, dev_order)
    num_classes = len(meta["labels"])
    if splits.validation is None:
        dev_logits = selection_logits
    else:
        dev_logits = _dev_once(trainer, loaded, splits, model_cfg, dev_teacher_logits)
    final = evaluation_report(np.asarray(splits.dev.labels), dev_logits, dev_teacher_logits, num_classes)
    if splits.validation is not None:
        final["validation"] = _figures(evaluation_report(np.asarray(splits.validation.labels), selection_logits,
                                                          validation_teacher_logits, num_classes))
        final["validation"]["loss"] = eval_loss
    else:
        final["eval_loss"] = eval_loss
    final["train_loss"] = train_result.training_loss
    final["train_examples_per_second"] = train_result.metrics.get("train_samples_per_second")
    final["train_minutes_on_clock"] = {"clock": settings.time_limit_clock, "minutes": budget_minutes}
    history = [entry for entry in trainer.state.log_history if any(k.startswith("eval_") for k in entry)]
    folder_meta = {**meta, "parameters": parameters, "calibration": final["calibration"],
                   "metrics": {k: final[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "n")},
                   **({"validation_metrics": final["validation"]} if "validation" in final else {}),
                   "max_length": model_cfg.max_length, "template": model_cfg.template,
                   "keep_layers": model_cfg.keep_layers, "ffn_width": model_cfg.ffn_width,
                   "lora": ({"enabled": True, "r": lora.r, "alpha": lora.alpha,
                             "target_modules": lora.target_modules} if lora.enabled else None)}
    if trainer.is_world_process_zero():  # one writer; the other ranks wait until the folder is in place
        with atomic_dir(output_dir) as temp:
            save_model_folder(loaded, temp, folder_meta, merge=lora.merge)
            (temp / "train_history.json").write_text(json.dumps(trainer.state.log_history, indent=1, default=str))
    trainer.accelerator.wait_for_everyone()
    return TrainOutcome(output_dir, history, final, dev_logits, parameters, train_seconds, folder_meta)
