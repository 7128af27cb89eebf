"""An instruct LLM as the teacher, prompted instead of tuned: class probabilities from its label words.

The prompt is an optional instruction, k labelled examples per class (`teacher.shots`, seeded, from the
training labels, never dev), then the text, as plain text or through the tokenizer's chat template
(`teacher.chat`). Every class has one or more label words, each scored as the log-probability of its
whole token sequence after the prompt; a class's score is the log-sum-exp of its words'. The part of the
prompt before the text is the same for every text: its key/value cache is computed once and reused by
every batch, so k shots cost little per text.

Calibration (`teacher.calibration`), because a small LLM leans towards one word (SmolLM2-135M: 0.537 on
SST-2 dev at its raw argmax, 0.842 at the median threshold):
- `contextual` (Zhao et al., 2021): divide the class probabilities by those the prompt gives content-free
  inputs ("N/A", "", "[MASK]"), the prompt's own bias;
- `fit`: a temperature and a per-class bias fitted (NLL) on the labelled rows that are not shots.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from llmneo.data import LabeledTexts
from llmneo.maths.metrics import softmax
from llmneo.progress import progress as show_progress

__all__ = ["CONTENT_FREE", "PromptedTeacher", "contextual_offsets", "fit_temperature_and_bias", "pick_shots"]

CONTENT_FREE = ("N/A", "", "[MASK]")
_TEXT = "\x00TEXT\x00"  # where the text goes, while the prompt is rendered


def pick_shots(labelled: LabeledTexts, per_class: int, num_classes: int, seed: int) -> list[tuple[str, int]]:
    """`per_class` labelled examples of every class, seeded, interleaved by class (no class last every time)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labelled.labels)
    chosen = []
    for label in range(num_classes):
        rows = np.flatnonzero(labels == label)
        if len(rows) < per_class:
            raise ValueError(f"teacher.shots: {per_class} per class, but class {label} has {len(rows)} labelled "
                             f"rows of {len(labelled)}; lower teacher.shots or give more labels")
        chosen.append(rng.choice(rows, per_class, replace=False).tolist())
    order = [row for group in zip(*chosen) for row in group]
    return [(labelled.texts[row], labelled.labels[row]) for row in order]


def contextual_offsets(content_free_logits: np.ndarray) -> np.ndarray:
    """(C,) what contextual calibration subtracts from every text's class log-probabilities: the log of the mean
    probability the prompt gives content-free inputs. Dividing by p_cf is subtracting log p_cf."""
    return np.log(softmax(content_free_logits).mean(axis=0) + 1e-12)


def fit_temperature_and_bias(labels: np.ndarray, logits: np.ndarray) -> tuple[float, np.ndarray]:
    """T > 0 and a bias (C,) minimising the NLL of softmax(logits / T + bias) on labelled rows (bias[0] fixed at 0,
    the others free: C parameters in all). L-BFGS over (log T, bias[1:])."""
    from scipy.optimize import minimize

    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    classes = logits.shape[1]

    def nll(params: np.ndarray) -> float:
        temperature = np.exp(params[0])
        bias = np.concatenate([[0.0], params[1:]])
        scaled = logits / temperature + bias
        scaled -= scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(labels)), labels].mean())

    result = minimize(nll, np.zeros(classes), method="L-BFGS-B", bounds=[(np.log(0.05), np.log(20.0))] +
                      [(-20.0, 20.0)] * (classes - 1))
    return float(np.exp(result.x[0])), np.concatenate([[0.0], result.x[1:]])


@dataclass
class _Calibration:
    offsets: np.ndarray | None = None  # contextual: subtracted
    temperature: float = 1.0  # fit: divided by, then the bias added
    bias: np.ndarray | None = None

    def apply(self, logits: np.ndarray) -> np.ndarray:
        out = logits - self.offsets if self.offsets is not None else logits
        out = out / self.temperature
        return out + self.bias if self.bias is not None else out

    def describe(self) -> dict[str, Any]:
        return {"offsets": None if self.offsets is None else self.offsets.tolist(), "temperature": self.temperature,
                "bias": None if self.bias is None else self.bias.tolist()}


class _Backend:
    """What the evaluate stage reads of a Predictor's backend: the model (for its parameter count), the device."""

    name = "torch"

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device = str(next(model.parameters()).device)


class PromptedTeacher:
    """An LLM read through a prompt and label words, with the Predictor methods the cache and evaluate stages use."""

    def __init__(self, model: Any, tokenizer: Any, labels: list[str], label_words: Sequence[Sequence[str]],
                 template: str, instruction: str = "", answer_prefix: str = "", chat: bool = False,
                 shots: Sequence[tuple[str, int]] = (), max_length: int = 128, mixed_precision: str = "no"):
        self.model, self.tokenizer, self.labels = model.eval(), tokenizer, list(labels)
        self.max_length = max_length
        self.autocast = {"bf16": torch.bfloat16}.get(mixed_precision)
        self.words = [list(words) for words in label_words]
        self.word_ids = [[self._word_tokens(word) for word in words] for words in self.words]
        self.head, self.tail = self._render(template, instruction, answer_prefix, chat, shots)
        self.prefix_ids = tokenizer(self.head, add_special_tokens=True)["input_ids"]
        self.calibration = _Calibration()
        self.backend = _Backend(model)
        self.meta = {"labels": self.labels, "kind": "prompted", "max_length": max_length, "prompt_head": self.head,
                     "prompt_tail": self.tail, "label_words": self.words, "shots": len(shots)}
        self._prefix_cache: Any = None

    def _word_tokens(self, word: str) -> list[int]:
        """The token ids of a label word, or a ValueError when the tokenizer cannot spell it back exactly."""
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        unknown = self.tokenizer.unk_token_id
        spelt = self.tokenizer.decode(ids)
        if not ids or (unknown is not None and unknown in ids) or spelt.strip() != word.strip():
            raise ValueError(f"teacher.label_words: {word!r} is not a whole token sequence of this tokenizer "
                             f"(it reads back as {spelt!r}); choose words it spells")
        return ids

    def _render(self, template: str, instruction: str, answer_prefix: str, chat: bool,
                shots: Sequence[tuple[str, int]]) -> tuple[str, str]:
        """The prompt before the text and after it. Whitespace before the text moves into the text's part, so the
        text tokenises as in running prose (" great", not " " + "great")."""
        if "{text}" not in template:
            raise ValueError("teacher.template: it has no {text}: where would the text go?")
        examples = [(template.format(text=text), answer_prefix + self.words[label][0]) for text, label in shots]
        query = template.format(text=_TEXT)
        if chat:
            messages = [{"role": "system", "content": instruction}] if instruction else []
            for shown, answer in examples:
                messages += [{"role": "user", "content": shown}, {"role": "assistant", "content": answer.strip()}]
            messages.append({"role": "user", "content": query})
            if getattr(self.tokenizer, "chat_template", None) is None:
                raise ValueError("teacher.chat: this tokenizer has no chat template; set teacher.chat: false")
            rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            rendered += answer_prefix
        else:
            blocks = [instruction] if instruction else []
            blocks += [shown + answer for shown, answer in examples]
            rendered = "\n\n".join([*blocks, query + answer_prefix])
        head, tail = rendered.split(_TEXT)
        self.lead = " " if head.endswith(" ") else ""
        return head.removesuffix(" "), tail

    def _text_ids(self, text: str) -> list[int]:
        """The text and the prompt's tail as token ids, the text cut (from its end) to `max_length` tokens."""
        ids = self.tokenizer(self.lead + text, add_special_tokens=False)["input_ids"][:self.max_length]
        return ids + self.tokenizer(self.tail, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def _prefix(self) -> Any:
        """The prompt head's key/value cache, computed once (batch of one)."""
        if self._prefix_cache is None:
            from transformers import DynamicCache

            ids = torch.tensor([self.prefix_ids], device=self.backend.model.device)
            cache = DynamicCache()
            with self._autocast():
                self.model(input_ids=ids, use_cache=True, **self._cache_argument(self.model, cache))
            self._prefix_cache = cache
        return self._prefix_cache

    @staticmethod
    def _cache_argument(model: Any, cache: Any) -> dict[str, Any]:
        """`cache=` where transformers names it so (5.24 on), `past_key_values=` before."""
        import inspect

        return {"cache": cache} if "cache" in inspect.signature(model.forward).parameters else {
            "past_key_values": cache}

    def _autocast(self):
        device = next(self.model.parameters()).device.type
        return torch.autocast(device, dtype=self.autocast, enabled=self.autocast is not None)

    @torch.inference_mode()
    def _score(self, texts: Sequence[str], use_cache: bool = True) -> np.ndarray:
        """(N, C) log P(class) before calibration: per class, log-sum-exp over its words of the summed token
        log-probabilities of the word after the prompt.

        One row per text gives every word's first token at once (the next-token distribution after the prompt);
        a word of m > 1 tokens adds a row holding its first m - 1 tokens, for the probabilities of the rest."""
        rows, reads = [], []  # reads[i]: (text, class, word, row, [(position, token), ...]) of one word's tokens
        for t, text in enumerate(texts):
            base = self._text_ids(text)
            rows.append(base)
            base_row = len(rows) - 1
            for c, words in enumerate(self.word_ids):
                for w, word in enumerate(words):
                    picks = [(base_row, len(base) - 1, word[0])]
                    if len(word) > 1:
                        rows.append(base + word[:-1])
                        picks += [(len(rows) - 1, len(base) - 1 + j, word[j]) for j in range(1, len(word))]
                    reads.append((t, c, picks))
        offset = 0 if use_cache else len(self.prefix_ids)
        if not use_cache:
            rows = [self.prefix_ids + row for row in rows]
        hidden = self._hidden(rows, use_cache)  # (R, T, H)
        wanted = sorted({(row, position + offset) for _, _, picks in reads for row, position, _ in picks})
        index = {key: i for i, key in enumerate(wanted)}
        head = self.model.get_output_embeddings()
        states = hidden[[r for r, _ in wanted], [p for _, p in wanted]]  # (K, H)
        logits = head(states.to(head.weight.dtype)).float()  # (K, V): only the positions a word is read at
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        log_probs = torch.log_softmax(logits, dim=-1)
        scores = np.full((len(texts), len(self.labels)), -np.inf)
        for t, c, picks in reads:
            value = float(sum(log_probs[index[(row, position + offset)], token] for row, position, token in picks))
            scores[t, c] = np.logaddexp(scores[t, c], value)
        return scores

    def _hidden(self, rows: list[list[int]], use_cache: bool) -> torch.Tensor:
        """(R, T, H) last hidden states of the rows (right-padded), after the cached prompt head when `use_cache`."""
        width = max(len(row) for row in rows)
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        for number, row in enumerate(rows):
            ids[number, :len(row)] = torch.tensor(row, device=device)
            mask[number, :len(row)] = 1
        kwargs: dict[str, Any] = {}
        if use_cache:
            cache = copy.deepcopy(self._prefix())
            cache.batch_repeat_interleave(len(rows))
            prefix = torch.ones((len(rows), len(self.prefix_ids)), dtype=torch.long, device=device)
            kwargs = {"use_cache": True, **self._cache_argument(self.model, cache)}
            mask = torch.cat([prefix, mask], dim=1)  # (B, P + T): the head is seen by every row
        body = getattr(self.model, self.model.base_model_prefix)
        with self._autocast():
            return body(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state

    def raw_logits(self, texts: Sequence[str], batch_size: int = 8, label: str | None = None,
                   use_cache: bool = True) -> np.ndarray:
        """(N, C) class log-probabilities before calibration, texts in order (batches length-sorted)."""
        order = np.argsort([len(text) for text in texts], kind="stable")
        out = np.empty((len(texts), len(self.labels)))
        starts = range(0, len(texts), batch_size)
        for start in show_progress(starts, label, unit="batch") if label else starts:
            index = order[start:start + batch_size]
            out[index] = self._score([texts[i] for i in index], use_cache)
        return out

    def calibrate(self, mode: str, fit_rows: LabeledTexts | None = None, content_free: Sequence[str] = CONTENT_FREE):
        """Set the calibration `mode` (none, contextual, fit) from the content-free inputs or the labelled rows."""
        self.calibration = _Calibration()
        if mode == "contextual":
            self.calibration.offsets = contextual_offsets(self.raw_logits(list(content_free)))
        elif mode == "fit":
            if fit_rows is None or len(fit_rows) == 0:
                raise ValueError("teacher.calibration: fit needs labelled rows that are not shots; give more labels "
                                 "or use contextual")
            temperature, bias = fit_temperature_and_bias(np.asarray(fit_rows.labels), self.raw_logits(fit_rows.texts))
            self.calibration.temperature, self.calibration.bias = temperature, bias
        self.meta["calibration"] = {"mode": mode, **self.calibration.describe()}
        return self

    def predict_logits(self, texts: Sequence[str], batch_size: int = 8, progress: str | None = None,
                       max_batch_tokens: int | None = None) -> np.ndarray:
        """(N, C) calibrated class logits (log-probabilities, up to a constant), as float32."""
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.calibration.apply(self.raw_logits(texts, min(batch_size, 16), progress)).astype(np.float32)
