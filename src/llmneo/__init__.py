"""llmneo: distil a large language model or encoder into a small, fast classifier with knowledge distillation."""

__version__ = "0.1.0"
