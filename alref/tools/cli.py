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
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table("role", "name", "from", "default model", "arguments", "status")
    for column in table.columns:
        column.overflow = "fold"  # model ids are printed whole
    for row in rows:
        name = row["name"] + (" (default)" if row.get("default") else "")
        origin = f"{row['origin']} {row.get('version') or ''}".strip()
        status = Text(row["status"], style="green" if row["status"] == "ok" else "red")
        model = row.get("model") or ("-" if row["status"] == "ok" else "")
        args = ", ".join(row.get("args", []))
        table.add_row(*(Text(v) for v in (row["role"] or "?", name, origin, model, args)), status)
    Console(soft_wrap=True, emoji=False).print(table)
