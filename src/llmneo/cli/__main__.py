"""`python -m llmneo.cli` (what `accelerate launch -m llmneo.cli` and `torchrun -m llmneo.cli` run)."""

from llmneo.cli import app

app()
