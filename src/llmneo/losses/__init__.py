"""Loss terms that plug in: one module per term behind `LossTerm`, found by name, weighed by the config.

`loss.terms` lists the terms with a weight for rows with a gold label and one for rows without (the
transfer set): `{kl: {gold: 0.5, unlabelled: 1}, ce: {gold: 0.5}}` is Hinton's loss with alpha 0.5. The
shorthand `loss.alpha`/`loss.kind`/`loss.hidden_weight` writes exactly that (`LossConfig.resolved_terms`).
Terms are found by discovery, not by a registry filled at import: every `LossTerm` subclass in this
package's modules, and in the modules `loss.modules` names (a user's own term is one module and one
config entry).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType

import numpy as np
import torch
from torch import nn

from llmneo.losses.base import (
    IGNORE_LABEL,
    LOGITS,
    DivergenceTerm,
    LossInputs,
    LossTerm,
    SignalContext,
    TeacherSignal,
    parse_options,
)

__all__ = [
    "IGNORE_LABEL",
    "LOGITS",
    "DivergenceTerm",
    "LossComposition",
    "LossInputs",
    "LossTerm",
    "SignalContext",
    "TeacherSignal",
    "build_loss",
    "term_classes",
]

_NOT_TERMS = {"base"}


def _terms_in(module: ModuleType) -> dict[str, type[LossTerm]]:
    return {cls.name: cls for cls in vars(module).values()
            if isinstance(cls, type) and issubclass(cls, LossTerm) and "name" in vars(cls)}


def term_classes(extra_modules: Iterable[str] = ()) -> dict[str, type[LossTerm]]:
    """Every loss term by name: this package's, then those of `extra_modules` (importable dotted names)."""
    found: dict[str, type[LossTerm]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _NOT_TERMS:
            found |= _terms_in(importlib.import_module(f"{__name__}.{info.name}"))
    for name in extra_modules:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise ValueError(f"loss.modules: cannot import {name!r} ({error})") from None
        found |= _terms_in(module)
    return found


class LossComposition(nn.Module):
    """The weighted sum of the terms, per row, averaged over the batch.

    A row with a gold label weighs each term by its `gold` weight, a row without by its `unlabelled` one;
    a term whose weight for a row is 0 never reads that row. Also reports each term's mean over the rows
    it weighed on, for logging.
    """

    def __init__(self, terms: dict[str, tuple[LossTerm, float, float]], temperature: float):
        super().__init__()
        self.terms = nn.ModuleDict({name: term for name, (term, _, _) in terms.items()})
        self.weights = {name: (gold, unlabelled) for name, (_, gold, unlabelled) in terms.items()}
        self.temperature = temperature

    @property
    def needs_student_hidden_states(self) -> bool:
        return any(term.needs_student_hidden_states for term in self.terms.values())

    def signals(self, context: SignalContext) -> list[TeacherSignal]:
        """The teacher signals the terms read, each once, in term order."""
        wanted = [signal for term in self.terms.values() for signal in term.signals(context)]
        return list(dict.fromkeys(wanted))

    def bind(self, context: SignalContext, signals: dict[str, np.ndarray]) -> None:
        for term in self.terms.values():
            term.bind(context, signals)

    def reads_gold_logits(self) -> bool:
        """Does any term distil the gold rows from the teacher's logits? If not, the teacher need not run on them."""
        return any(isinstance(term, DivergenceTerm) and self.weights[name][0] > 0 for name, term in self.terms.items())

    def forward(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        gold = inputs.gold  # (B,)
        per_row = torch.zeros(len(gold), device=gold.device)
        components = {}
        for name, term in self.terms.items():
            gold_weight, unlabelled_weight = self.weights[name]
            weight = torch.where(gold, gold_weight, unlabelled_weight).to(per_row.device)  # (B,)
            active = weight > 0
            if not active.any():
                continue
            values = term.rows(inputs, active)  # (B,), 0 off the active rows
            per_row = per_row + weight * values
            components[f"{name}_loss"] = values.sum() / active.sum()
        return per_row.mean(), components


def build_loss(terms: dict[str, dict], temperature: float, modules: Iterable[str] = ()) -> LossComposition:
    """The composition `loss.terms` (or its shorthand) describes; an unknown term or option names its key."""
    available = term_classes(modules)
    built = {}
    for name, settings in terms.items():
        if name not in available:
            raise ValueError(f"loss.terms.{name}: no such loss term (available: {', '.join(sorted(available))}; "
                             "a term of your own: loss.modules)")
        options = {key: value for key, value in settings.items() if key not in ("gold", "unlabelled")}
        term = available[name](parse_options(available[name], options, f"loss.terms.{name}"))
        built[name] = (term, float(settings.get("gold", 0.0)), float(settings.get("unlabelled", 0.0)))
    return LossComposition(built, temperature)
