"""``alref tools list``: the tools alref can use, built in and from plugins, by role, and the tools the
chat gets from the MCP servers of the ``mcp`` setting (each server is started to list them, then stopped)."""

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


def mcp_rows(settings: Any = None) -> list[dict[str, Any]]:
    """The chat's tools from each configured MCP server (its servers are started, listed and stopped); a
    server that does not start is one row with why."""
    from alref.config import load_settings
    from alref.tools.mcp_client import McpConnections, clean, tool_name

    settings = settings or load_settings()
    rows: list[dict[str, Any]] = []
    if not settings.mcp.servers:
        return rows
    with McpConnections(settings.mcp.servers) as connections:
        for server, config in settings.mcp.servers.items():
            origin = f"mcp server {server} ({config.transport})"
            if server not in connections.listed:
                why = connections.failed.get(server, "it did not start")
                rows.append({"name": server, "role": "mcp", "origin": origin, "status": f"broken: {why}"})
            for tool in connections.listed.get(server, []):
                schema = tool.input_schema or {}
                rows.append({
                    "name": tool_name(server, tool.name), "role": "mcp", "origin": origin, "version": "",
                    "default": False, "model": None, "args": list(schema.get("properties") or {}),
                    "chat_tool": True, "description": clean(tool.description or "", 300), "status": "ok",
                })  # fmt: skip
    return rows


def tools_list(as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False) -> None:
    """The tools alref can use (built in and from installed plugins; pick one with --grounding NAME), and
    the chat's tools from the MCP servers in alref.toml."""
    rows = tool_rows() + mcp_rows()
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
        if ok and row["role"] != "mcp":
            tool.append(f"\nmodel: {row.get('model') or '-'}")
        if ok and row.get("args"):
            tool.append(f"\narguments: {', '.join(row['args'])}", style="dim")
        table.add_row(Text(row["role"] or "?"), tool)
    console().print(table)
