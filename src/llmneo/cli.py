"""The `llmneo` command line: one typer app, one thin command per pipeline stage.

Commands only parse arguments, turn known errors into one-line messages, and call the stage's
function; the work lives in the stage modules.
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distil an LLM into a small, fast classifier.")

# --- core pipeline commands (lead) ---

# --- tracking commands: promote, report, ui (tracking owner) ---

# --- serving commands: serve, bench-serve (serve owner) ---

# --- export and benchmark commands: export, bench (export owner) ---

# --- end of command blocks ---

if __name__ == "__main__":
    app()
