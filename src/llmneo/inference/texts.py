"""What a text must be to get a label, the same in the CLI and the server.

A blank text used to get a label ("positive 0.536"): a model's answer to nothing. Blank texts are
refused, naming their position, and so are texts over `MAX_TEXT_CHARS` characters. Accepted texts longer
than the model's `max_length` tokens are truncated by the tokenizer, in both places alike.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_TEXT_CHARS", "NOT_BLANK_PATTERN", "TextRejected", "check_text", "check_texts"]

MAX_TEXT_CHARS = 2000
# A character Python's str.isspace() does not count as whitespace, spelt out so that the API's JSON schema
# (`pattern`) and this check agree character for character, whatever regex engine reads the schema.
_SPACES = (0x9, 0xA, 0xB, 0xC, 0xD, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028,
           0x2029, 0x202F, 0x205F, 0x3000)
NOT_BLANK_PATTERN = "[^" + "".join(f"\\u{code:04x}" for code in _SPACES) + "]"


class TextRejected(ValueError):
    """A text no label should be given to; the message names which text."""


def check_text(text: str, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    """Why `text` is refused (one phrase), or None when it may be classified."""
    if not text.strip():
        return "empty or whitespace-only text"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # bytes that were not UTF-8, passed through as surrogates (argv, files)
        return f"not valid UTF-8 (at character {error.start + 1}); pass UTF-8 text"
    if len(text) > max_chars:
        return f"{len(text):,} characters, over the limit of {max_chars:,}"
    return None


def check_texts(texts: Sequence[str], max_chars: int = MAX_TEXT_CHARS, names: Sequence[str] | None = None) -> None:
    """Raise TextRejected for the first text refused; `names[i]` says where text i came from (a file and line)."""
    for index, text in enumerate(texts):
        if (problem := check_text(text, max_chars)) is not None:
            where = names[index] if names is not None else f"text {index + 1}"
            raise TextRejected(f"{where}: {problem}")
