"""PyTorch backend: the saved (merged) model under `torch.inference_mode`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmneo.modelfolder.weights import load_model_folder, pick_device

__all__ = ["TorchBackend"]


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device, mixed_precision: str = "no"):
        self.model = model.eval()
        self._device = device
        self._autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
        self._input_names = {"input_ids", "attention_mask", "token_type_ids"}

    @classmethod
    def from_folder(cls, folder: Path, meta: dict[str, Any], device: str = "auto",
                    num_threads: int | None = None, mixed_precision: str = "no") -> TorchBackend:
        if num_threads:
            torch.set_num_threads(num_threads)
        resolved = pick_device(device)
        return cls(load_model_folder(folder, device=str(resolved)).model, resolved, mixed_precision)

    @property
    def device(self) -> str:
        return str(self._device)

    def logits(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {k: torch.from_numpy(v).to(self._device) for k, v in encoded.items() if k in self._input_names}
        with torch.inference_mode(), torch.autocast(self._device.type, dtype=self._autocast,
                                                    enabled=self._autocast is not None):
            return self.model(**inputs).logits.float().cpu().numpy()
