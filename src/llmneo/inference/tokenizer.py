"""A model folder's fast tokenizer read from its `tokenizer.json` with `tokenizers` alone.

transformers' `AutoTokenizer` wraps the same Rust tokenizer but costs an import of transformers
(and, through it, of torch) and about a second at start-up. The ONNX serving path needs neither, so
it reads `tokenizer.json` directly and takes the pad token from `tokenizer_config.json` (as
`llmneo.modelfolder.load_tokenizer` does: the pad token, else EOS, else UNK). Truncation follows
transformers' defaults for one sentence (longest first, on the right); padding is the Predictor's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from llmneo.modelfolder import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE

__all__ = ["JsonTokenizer"]


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class JsonTokenizer:
    """Texts -> unpadded token ids in one call of the Rust tokenizer; `pad_token_id` for the Predictor."""

    def __init__(self, tokenizer: Tokenizer, pad_token_id: int, max_length: int):
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id
        tokenizer.no_padding()  # a saved tokenizer.json may remember the padding of its last call
        tokenizer.enable_truncation(max_length, stride=0, strategy="longest_first", direction="right")

    @classmethod
    def from_folder(cls, folder: str | Path, max_length: int) -> JsonTokenizer:
        folder = Path(folder)
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        config_path = folder / TOKENIZER_CONFIG_FILE
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        for key in ("pad_token", "eos_token", "unk_token"):
            token = _token_text(config.get(key))
            if token is not None and (token_id := tokenizer.token_to_id(token)) is not None:
                return cls(tokenizer, token_id, max_length)
        raise ValueError(f"{folder}: {TOKENIZER_CONFIG_FILE} names no pad, EOS or UNK token that "
                         f"{TOKENIZER_FILE} knows; the Predictor cannot pad a batch")

    @staticmethod
    def available(folder: str | Path) -> bool:
        return (Path(folder) / TOKENIZER_FILE).is_file()

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Special tokens added, truncated to max_length; one Rust call for the whole list."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]
