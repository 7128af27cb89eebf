"""The command-line and HTTP references of the docs, generated from the commands and the app themselves.

`python -m llmneo.cli.reference docs/reference` writes `cli.md` (every command, its arguments and options,
from the typer app) and `http-api.md` (every route, its request fields and its answers, from the served
OpenAPI document). A test renders both again and compares: a flag or a field added without regenerating
fails CI, so the reference cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

__all__ = ["command_options", "render_cli_reference", "render_http_reference"]


def _click_app() -> Any:
    from llmneo.cli import app

    return typer.main.get_command(app)


def command_options() -> dict[str, set[str]]:
    """Every command's option names (`--flag`), the app's own (global) ones under ""."""
    group = _click_app()
    names = {"": {opt for param in group.params for opt in param.opts if opt.startswith("--")}}
    for name, command in group.commands.items():
        names[name] = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)
                       if opt.startswith("--")} | {"--help"}
    return names


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(param: Any) -> str:
    default = param.default
    if param.required:
        return "required"
    if default is None or (isinstance(default, (list, tuple)) and not default):
        return ""
    if isinstance(default, bool):
        return "`on`" if default else "`off`"
    return f"`{getattr(default, 'value', default)}`"


def _option(param: Any, context: Any) -> str:
    names = ", ".join(f"`{name}`" for name in (*param.opts, *param.secondary_opts))
    kind = "flag" if param.is_flag else param.display_type(context).strip("<>")
    return f"| {names} | {_cell(kind)} | {_default(param)} | {_cell(param.help or '')} |"


def render_cli_reference() -> str:
    group = _click_app()
    top = group.make_context("llmneo", ["--help"], resilient_parsing=True)
    lines = ["# Command-line reference", "",
             ("Generated from the commands themselves (`python -m llmneo.cli.reference docs/reference`); "
             "`llmneo COMMAND --help` prints the same. Global options come before the command: "
             "`llmneo --verbose run ...`."), "", "## llmneo", "", _cell(group.help or ""), "",
             "| option | type | default | what it does |", "| --- | --- | --- | --- |"]
    lines += [_option(param, top) for param in group.params]
    for name, command in group.commands.items():
        context = command.make_context(name, [], resilient_parsing=True)
        arguments = [param for param in command.params if param.param_type_name == "argument"]
        shown = " ".join(f"{param.metavar or param.name.upper()}{'...' if param.nargs == -1 else ''}"
                         for param in arguments)
        lines += ["", f"## llmneo {name}", "", f"`llmneo {name} [OPTIONS] {shown}`".replace(" `", "`"), "",
                  " ".join((command.help or "").split()), ""]
        for argument in arguments:
            lines.append(f"- `{argument.metavar or argument.name.upper()}`: {_cell(argument.help or '')}")
        if arguments:
            lines.append("")
        lines += ["| option | type | default | what it does |", "| --- | --- | --- | --- |"]
        lines += [_option(param, context) for param in command.params if param.param_type_name == "option"]
    return "\n".join(lines) + "\n"


def _schema_fields(schema: dict[str, Any], components: dict[str, Any]) -> list[tuple[str, str, str]]:
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    rows = []
    for name, field in (schema.get("properties") or {}).items():
        if "$ref" in field:
            field = components[field["$ref"].rsplit("/", 1)[-1]]
        kind = field.get("type") or " or ".join(option.get("type", "?") for option in field.get("anyOf", []))
        items = field.get("items") or {}
        limits = [f"{key} {field[key]}" for key in ("minItems", "maxItems", "minimum", "maximum") if key in field]
        limits += [f"each {key} {items[key]}" for key in ("maxLength",) if key in items]
        shown = f"{kind} ({', '.join(limits)})" if limits else kind
        rows.append((name, shown, _cell(field.get("description", ""))))
    return rows


def render_http_reference() -> str:
    from llmneo.serve.app import create_app
    from llmneo.serve.settings import ServeSettings

    document = create_app(ServeSettings(model="unused")).openapi()
    components = document.get("components", {}).get("schemas", {})
    lines = ["# HTTP API reference", "", ("Generated from the server's OpenAPI document (`GET /openapi.json`, browsable "
             "at `/docs`) with the default limits; `python -m llmneo.cli.reference docs/reference` writes it. Every "
             "error answers `{\"detail\": [{\"type\", \"loc\", \"msg\"}]}`."), ""]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            lines += [f"## {method.upper()} {path}", "", _cell(operation.get("description") or operation.get("summary", "")),
                      ""]
            body = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                lines += ["| field | type | what it is |", "| --- | --- | --- |"]
                lines += [f"| `{name}` | {kind} | {text} |" for name, kind, text in _schema_fields(body, components)]
                lines.append("")
            lines += ["| status | when |", "| --- | --- |"]
            lines += [f"| {code} | {_cell(answer.get('description', ''))} |"
                      for code, answer in operation.get("responses", {}).items()]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/reference")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cli.md").write_text(render_cli_reference())
    (folder / "http-api.md").write_text(render_http_reference())
    print(f"wrote {folder / 'cli.md'} and {folder / 'http-api.md'}")


if __name__ == "__main__":
    main()
