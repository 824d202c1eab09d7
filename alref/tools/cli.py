"""``alref tools list``: the tools alref can use, built in and from plugins, by role."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer


def tool_rows() -> list[dict[str, Any]]:
    """Every tool (by role, built-ins first), then every broken plugin."""
    from alref.tools.registry import BUILTIN, DEFAULTS, broken, one_line, registry

    rows: list[dict[str, Any]] = []
    for spec in sorted(registry().values(), key=lambda s: (s.role, s.origin != BUILTIN, s.name)):
        try:
            args = list(schema.model_fields) if (schema := spec.schema()) else []
        except Exception as exc:  # noqa: BLE001 - a plugin's lazy schema that fails is shown, not raised
            args = [f"(broken: {one_line(exc)})"]
        rows.append({
            "name": spec.name, "role": spec.role, "origin": spec.origin, "version": spec.version,
            "default": DEFAULTS.get(spec.role) == spec.name, "model": spec.default_model, "args": args,
            "chat_tool": spec.make_tool is not None, "description": spec.description, "status": "ok",
        })  # fmt: skip
    for bad in broken():
        rows.append({"name": bad.name, "role": None, "origin": bad.origin, "status": f"broken: {bad.error}"})
    return rows


def tools_list(as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False) -> None:
    """The tools alref can use (built in and from installed plugins); pick one with --grounding NAME."""
    rows = tool_rows()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from alref.terminal import console

    # two columns, so that 80 are enough: the role, and the tool with its model and arguments below it
    # (an id is printed whole on its own line; the arguments wrap at words)
    table = Table("role", "tool", box=box.SIMPLE_HEAD, show_edge=False)
    table.columns[0].no_wrap = True
    table.columns[1].overflow = "fold"
    for row in rows:
        ok = row["status"] == "ok"
        tool = Text(row["name"], style="bold")
        tool.append(" (default)" if row.get("default") else "")
        tool.append(f" · {row['origin']} {row.get('version') or ''}".rstrip())
        tool.append(" · ")
        tool.append(row["status"], style="green" if ok else "red")
        if ok:
            tool.append(f"\nmodel: {row.get('model') or '-'}")
            if row.get("args"):
                tool.append(f"\narguments: {', '.join(row['args'])}", style="dim")
        table.add_row(Text(row["role"] or "?"), tool)
    console().print(table)
