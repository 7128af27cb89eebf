"""Fine-tune a teacher (cross-entropy) or distil a student (the loss terms of `llmneo.losses`) with `Trainer`.

Trainer brings what later scale-out needs without a rewrite: gradient accumulation, schedules,
checkpoints with optimizer/scheduler/RNG state and data position (`--resume`), and DDP, FSDP or
DeepSpeed under `accelerate launch`. The subclass overrides `compute_loss` (DistillKit's pattern): the
batch carries the teacher signals by name and the loss composition reads them, so the trainer never
knows where they came from nor which terms there are.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from llmneo.atomic import atomic_dir
from llmneo.config import ModelConfig, StudentConfig, TeacherConfig, TrainSettings
from llmneo.data import DataSplits
from llmneo.losses import LossComposition, LossInputs
from llmneo.maths.metrics import (
    agreement,
    classification_metrics,
    confusion,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    per_class_metrics,
    softmax,
)
from llmneo.maths.params import count_parameters
from llmneo.modelfolder import read_model_meta, write_model_meta
from llmneo.modelfolder.weights import LoadedModel, VerbalizerClassifier, save_model_folder
from llmneo.progress import is_terminal
from llmneo.training.batches import SignalCollator, length_sorted, prompt_texts, tokenised
from llmneo.training.callbacks import (
    BudgetSpent,
    CheckpointCompleteMarker,
    ProgressLines,
    TimeBudgetSchedule,
    WallClockLimit,
    budget_clock,
    last_complete_checkpoint,
)
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
    """`Trainer` whose training loss is the loss composition when it has one, cross-entropy otherwise."""

    def __init__(self, *args: Any, loss: LossComposition | None = None,
                 time_budget: tuple[float, float, BudgetSpent] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.loss = loss  # its terms may own parameters (a width bridge): trained beside the model, never saved
        self._loss_in_optimizer = False
        self.time_budget = time_budget  # (seconds, warm-up share, spent) of a clock-driven schedule, or None
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
            seconds, warmup, spent = self.time_budget
            factor = TimeBudgetSchedule(seconds, warmup, spent.seconds)
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, lambda _: factor())
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
        """The model's optimizer, plus the loss terms' own parameters (no weight decay) when they have any."""
        optimizer = super().create_optimizer(model)
        parameters = list(self.loss.parameters()) if self.loss is not None else []
        if parameters and not self._loss_in_optimizer:
            optimizer.add_param_group({"params": parameters, "weight_decay": 0.0})
            self._loss_in_optimizer = True
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher = inputs.pop("teacher", None)  # TeacherSignal.name -> (B, ...), training batches only
        labels = inputs.pop("labels")
        if self.loss is None or teacher is None:  # the teacher's own tuning, and every evaluation: CE on labels
            outputs = model(**inputs)
            loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels)
            return (loss, outputs) if return_outputs else loss
        hidden = self.loss.needs_student_hidden_states
        outputs = model(**inputs, **({"output_hidden_states": True} if hidden else {}))
        loss, components = self.loss(LossInputs(outputs.logits, labels, teacher, outputs.hidden_states if hidden
                                                else None, inputs.get("attention_mask"), self.loss.temperature))
        self._accumulate(components)
        return (loss, outputs) if return_outputs else loss

    def _accumulate(self, components: dict[str, torch.Tensor]) -> None:
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


def _logits(predictions: np.ndarray | tuple) -> np.ndarray:
    """The logits of a Trainer prediction: the first output when the model returns several."""
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def _metrics_function(teacher_logits: np.ndarray | None):
    """Metrics of each evaluation during training (on validation when there is one, else dev)."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        probs = softmax(_logits(prediction.predictions))
        metrics = classification_metrics(prediction.label_ids, probs)
        metrics.pop("n")
        if teacher_logits is not None:
            metrics["agreement"] = agreement(probs.argmax(axis=1), teacher_logits.argmax(axis=1))
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
        disable_tqdm=not is_terminal(),  # in a log: ProgressLines' plain lines instead of a redrawn bar
    )


def evaluation_report(labels: np.ndarray, logits: np.ndarray, teacher_logits: np.ndarray | None,
                      num_classes: int, class_names: list[str] | None = None) -> dict[str, Any]:
    """Final figures: metrics, each class's, confusion matrix, agreement, the fitted calibration temperature."""
    probs = softmax(logits)
    report: dict[str, Any] = classification_metrics(labels, probs)
    report["log_loss"] = negative_log_likelihood(labels, logits)
    report["per_class"] = per_class_metrics(labels, probs.argmax(axis=1), class_names or
                                            [str(i) for i in range(num_classes)])
    report["confusion_matrix"] = confusion(labels, probs.argmax(axis=1), num_classes)
    if teacher_logits is not None:
        report["agreement"] = agreement(probs.argmax(axis=1), teacher_logits.argmax(axis=1))
    temperature = fit_temperature(labels, logits)
    report["calibration"] = {"temperature": temperature,
                             "ece_before": expected_calibration_error(labels, probs),
                             "ece_after": expected_calibration_error(labels, softmax(logits, temperature))}
    return report


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an evaluation report (no confusion matrix or calibration)."""
    keys = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc", "log_loss", "agreement",
            "n")
    return {key: report[key] for key in keys if key in report}


def _saved_model_logits(folder: Path, splits: DataSplits, batch_size: int) -> dict[str, np.ndarray]:
    """Dev (and validation) logits of the saved model, read back as `llmneo evaluate`, `predict` and the
    server read it (fp32, merged): the one accuracy every command reports for this model. Training's own
    evaluations run under the training dtype (bf16 autocast) and may differ by a sentence or two."""
    from llmneo.inference import Predictor

    predictor = Predictor.load(folder, backend="torch")
    parts = {"dev": splits.dev, **({"validation": splits.validation} if splits.validation is not None else {})}
    return {name: predictor.predict_logits(part.texts, batch_size) for name, part in parts.items()}


def fine_tune(loaded: LoadedModel, stage_cfg: TeacherConfig | StudentConfig, splits: DataSplits, output_dir: Path,
              meta: dict[str, Any], loss: LossComposition | None = None,
              train_signals: dict[str, np.ndarray] | None = None, dev_teacher_logits: np.ndarray | None = None,
              validation_teacher_logits: np.ndarray | None = None,
              callbacks: list[TrainerCallback] | None = None, resume: bool = False) -> TrainOutcome:
    """Train `loaded` on `splits` and save it as a model folder at `output_dir` (atomically).

    The stage's config says everything else: `train` (the schedule), `lora` (adapters, merging) and
    the model settings (template, max length, device, dtype). With `loss` (and the teacher signals it
    reads, per training row, in `train_signals`) the model is distilled; without, tuned by cross-entropy.
    Evaluations during training (and keep_best) read the validation split when there is one, else dev.
    The final figures are the saved model's, read back: `final` on dev, `final["validation"]` on validation.
    """
    model_cfg, settings, lora = stage_cfg, stage_cfg.train, stage_cfg.lora
    role = meta.get("role", "model")
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    torch.manual_seed(settings.seed)
    if lora.enabled:
        apply_lora(loaded, lora)
    freeze(loaded.model, settings.freeze_embeddings, settings.freeze_layers)
    parameters = count_parameters(loaded.model)
    print(f"[{role}] parameters: {parameters['total']:,.0f} total, "
          f"{parameters['trainable']:,.0f} trainable ({parameters['trainable_share']:.2%})")
    for name, array in (train_signals or {}).items():
        if len(array) != len(splits.train):
            raise ValueError(f"teacher {name} have {len(array)} rows for {len(splits.train)} training texts")
    train_ds = tokenised(loaded, prompt_texts(splits.train.texts, model_cfg), splits.train.labels,
                         model_cfg.max_length, with_rows=bool(train_signals))
    selection = splits.selection
    selection_teacher_logits = dev_teacher_logits if splits.validation is None else validation_teacher_logits
    eval_ds, eval_order = length_sorted(tokenised(loaded, prompt_texts(selection.texts, model_cfg), selection.labels,
                                                  model_cfg.max_length))
    checkpoints = output_dir.parent / f"checkpoints-{output_dir.name}"
    last = last_complete_checkpoint(checkpoints) if resume else None
    if resume:
        print(f"[{role}] resuming from {last}" if last else "[resume] no checkpoint: from the start")
    spent = BudgetSpent.resumed_from(budget_clock(settings.time_limit_clock), last)
    trainer = DistillationTrainer(
        model=loaded.model, args=_training_arguments(settings, checkpoints, model_cfg),
        data_collator=SignalCollator(loaded.tokenizer, train_signals), train_dataset=train_ds, eval_dataset=eval_ds,
        compute_metrics=_metrics_function(None if selection_teacher_logits is None
                                          else selection_teacher_logits[eval_order]),
        callbacks=[spent, CheckpointCompleteMarker(), *(callbacks or []),  # the budget record before the marker
                   *([WallClockLimit(settings.time_limit_minutes, spent)] if settings.time_limit_minutes else [])],
        loss=loss,
        time_budget=((settings.time_limit_minutes * 60, settings.warmup_ratio, spent)
                     if settings.time_limit_minutes and settings.lr_over_time_limit else None),
    )
    if not is_terminal():
        trainer.remove_callback(PrinterCallback)  # its raw dicts, every logging step
        trainer.add_callback(ProgressLines(role, budget_minutes=settings.time_limit_minutes, spent=spent))
    started = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=last)
    train_seconds = time.perf_counter() - started
    budget_minutes = spent.seconds() / 60
    history = [entry for entry in trainer.state.log_history if any(k.startswith("eval_") for k in entry)]
    folder_meta = {**meta, "parameters": parameters, "max_length": model_cfg.max_length,
                   "template": model_cfg.template, "keep_layers": model_cfg.keep_layers,
                   "ffn_width": model_cfg.ffn_width,
                   "lora": ({"enabled": True, "r": lora.r, "alpha": lora.alpha,
                             "target_modules": lora.target_modules} if lora.enabled else None)}
    final: dict[str, Any] = {}
    dev_logits = None
    if trainer.is_world_process_zero():  # one writer; the other ranks wait until the folder is in place
        trainer.optimizer = None  # its state (twice the model) is not needed to read the model back
        with atomic_dir(output_dir) as temp:
            save_model_folder(loaded, temp, folder_meta, merge=lora.merge)
            (temp / "train_history.json").write_text(json.dumps(trainer.state.log_history, indent=1, default=str))
            final, dev_logits = _final_report(temp, splits, meta, dev_teacher_logits, validation_teacher_logits,
                                              settings.eval_batch_size)
            folder_meta = _record_final(temp, folder_meta, final)
        final["train_loss"] = train_result.training_loss
        final["train_examples_per_second"] = train_result.metrics.get("train_samples_per_second")
        final["train_minutes_on_clock"] = {"clock": settings.time_limit_clock, "minutes": budget_minutes}
        if note := _read_back_note(history, final, trainer.state.best_global_step, settings.mixed_precision):
            print(f"[{role}] {note}")
    trainer.accelerator.wait_for_everyone()
    return TrainOutcome(output_dir, history, final, dev_logits, parameters, train_seconds, folder_meta)


def _read_back_note(history: list[dict[str, Any]], final: dict[str, Any], best_step: int | None,
                    precision: str) -> str | None:
    """Why the figure at the end of training can differ from the one evaluated during it: evaluations ran
    under mixed precision, the saved model is read back in fp32 (as `evaluate` and the server read it), and
    that figure is the model's one accuracy."""
    evaluated = [entry for entry in history if "eval_accuracy" in entry]
    if not evaluated or precision == "no":
        return None
    kept = next((e for e in evaluated if e.get("step") == best_step), evaluated[-1])
    split, read_back = ("validation", final["validation"]) if "validation" in final else ("dev", final)
    if abs(kept["eval_accuracy"] - read_back["accuracy"]) < 1e-9:
        return None
    return (f"{split} accuracy {read_back['accuracy']:.4f} read back in fp32, the figure `evaluate` and the server "
            f"reproduce ({precision} evaluation during training, step {kept['step']}: {kept['eval_accuracy']:.4f})")


def _final_report(folder: Path, splits: DataSplits, meta: dict[str, Any], dev_teacher_logits: np.ndarray | None,
                  validation_teacher_logits: np.ndarray | None,
                  batch_size: int) -> tuple[dict[str, Any], np.ndarray]:
    """The saved model's figures on dev (and validation), and its dev logits."""
    logits = _saved_model_logits(folder, splits, batch_size)
    names = list(meta["labels"])
    final = evaluation_report(np.asarray(splits.dev.labels), logits["dev"], dev_teacher_logits, len(names), names)
    if "validation" in logits:
        final["validation"] = _figures(evaluation_report(np.asarray(splits.validation.labels), logits["validation"],
                                                          validation_teacher_logits, len(names), names))
    return final, logits["dev"]


def _record_final(folder: Path, meta: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """The folder's meta gains the figures just measured on it (calibration, dev and validation)."""
    recorded = {"calibration": final["calibration"],
                "metrics": {k: final[k] for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted",
                                                "roc_auc", "n")},
                **({"validation_metrics": final["validation"]} if "validation" in final else {})}
    write_model_meta(folder, {**read_model_meta(folder), **recorded})
    return {**meta, **recorded}
