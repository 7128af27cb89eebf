"""llmneo: distil a large language model into a small, fast classifier with KD + LoRA."""

__version__ = "0.1.0"
