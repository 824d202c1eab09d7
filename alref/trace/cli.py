"""``alref trace show | list | export``: the commands that read the traces every run writes to
``OUT/trace/``. alref/cli.py registers :data:`trace_app`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

trace_app = typer.Typer(
    help="Read the agent traces that every run writes to OUT/trace/.", no_args_is_help=True
)


@trace_app.command("show")
def trace_show(
    run: Annotated[Path, typer.Argument(help="a run's output folder (or its trace/ folder)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the events as a JSON list")] = False,
) -> None:
    """Print a run's trace as a tree: references, clips, steps, LLM calls, decisions and fallbacks."""
    from alref.trace.cost import cost_line
    from alref.trace.record import load_trace
    from alref.trace.view import render_tree

    events = load_trace(run)
    if as_json:
        sys.stdout.write(json.dumps(events, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    console = Console(soft_wrap=True, emoji=False)
    tree = render_tree(events, run)
    tree.add(cost_line(events))
    console.print(tree)


@trace_app.command("list")
def trace_list(
    root: Annotated[
        Path, typer.Argument(help="folder to search: runs (OUT/trace/events.jsonl) up to 3 levels below it")
    ] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print the runs as a JSON list")] = False,
) -> None:
    """List the runs under a folder: status, mode, references, clips, LLM calls, tokens, cost, duration."""
    from alref.trace.runs import list_runs

    runs = list_runs(root)
    if as_json:
        sys.stdout.write(json.dumps(runs, indent=2, ensure_ascii=False) + "\n")
        return
    console = Console(soft_wrap=True, emoji=False)
    if not runs:
        console.print(f"no runs under {escape(str(root))} (a run is a folder with trace/events.jsonl)")
        return
    table = Table(title=f"runs under {escape(str(root))}", caption="cost: USD estimate from a price table")
    for column in (
        "run",
        "started",
        "status",
        "mode",
        "refs",
        "clips",
        "LLM calls",
        "tokens",
        "cost",
        "time",
    ):
        table.add_column(
            column, justify="right" if column in ("refs", "clips", "LLM calls", "tokens") else "left"
        )
    for r in runs:
        cost = f"${r['cost_usd']:.4f}" if not r["unknown_price"] else "unknown"
        cost = f"{cost}+?" if r["unknown_price"] and r["cost_usd"] else cost
        duration = f"{r['duration_s']:.1f}s" if isinstance(r["duration_s"], int | float) else "-"
        status = r["status"] if r["status"] == "ok" else f"[yellow]{escape(r['status'])}[/]"
        path = Path(r["path"])
        shown = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        started = str(r["started"] or "-")[:16].replace("T", " ")
        table.add_row(
            escape(shown), escape(started), status, escape(r["mode"]), str(r["references"]),
            str(r["clips"]), str(r["llm_calls"]), f"{r['tokens']:,}", cost, duration,
        )  # fmt: skip
    console.print(table)


@trace_app.command("export")
def trace_export(
    run: Annotated[Path, typer.Argument(help="a run's output folder (or its trace/ folder)")],
    html: Annotated[Path, typer.Option("--html", help="the HTML file to write", dir_okay=False)],
) -> None:
    """Write a run's trace as one self-contained HTML page (images inlined, no script), readable offline."""
    from alref.trace.html import export_html

    path = export_html(run, html)
    size = path.stat().st_size / 1024
    Console(soft_wrap=True, emoji=False).print(
        f"wrote {escape(str(path))} ({size:,.0f} KiB); open it in any browser"
    )
