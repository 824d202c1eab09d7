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

from alref.terminal import AlrefCommand, AlrefGroup, console

trace_app = typer.Typer(
    help="Read the agent traces that every run writes to OUT/trace/.", no_args_is_help=True, cls=AlrefGroup
)


@trace_app.command("show", cls=AlrefCommand)
def trace_show(
    run: Annotated[Path, typer.Argument(help="a run's output folder (or its trace/ folder)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the events as a JSON list")] = False,
    full: Annotated[
        bool, typer.Option("--full", help="the LLM's raw answers, line breaks kept, and nothing shortened")
    ] = False,
) -> None:
    """Print a run's trace as a tree: references, clips, steps, LLM calls, decisions and fallbacks. The
    LLM's answers are shown in full, wrapped at the terminal's width."""
    from alref.trace.cost import cost_line
    from alref.trace.record import load_trace
    from alref.trace.view import render_tree

    events = load_trace(run)
    if as_json:
        sys.stdout.write(json.dumps(events, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    tree = render_tree(events, run, full=full)
    tree.add(cost_line(events))
    console().print(tree)  # wrapped at words, never cut at the edge


@trace_app.command("list", cls=AlrefCommand)
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
    out = console()
    if not runs:
        out.print(f"no runs under {root} (a run is a folder with trace/events.jsonl)", markup=False)
        return
    out.print(runs_table(runs, root))


def runs_table(runs: list[dict], root: Path) -> Table:
    """One row per run that fits 80 columns: the folder with its mode, references and clips below it (a
    long path folds, the mode wraps at words), the date over the time, short numeric columns."""
    from rich import box
    from rich.text import Text

    table = Table(title=f"runs under {escape(str(root))}", caption="calls: LLM calls; cost: USD estimate from a price table",
                  box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))  # fmt: skip
    table.add_column("run", overflow="fold", ratio=1)
    table.add_column("started", no_wrap=True)
    table.add_column("status", overflow="fold")
    for column in ("calls", "tokens", "cost", "time"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in runs:
        cost = f"${r['cost_usd']:.4f}" if not r["unknown_price"] else "unknown"
        cost = f"{cost}+?" if r["unknown_price"] and r["cost_usd"] else cost
        duration = f"{r['duration_s']:.1f}s" if isinstance(r["duration_s"], int | float) else "-"
        path = Path(r["path"])
        run = Text(str(path.relative_to(root)) if path.is_relative_to(root) else str(path))
        refs, clips = r["references"], r["clips"]
        counts = f"{refs} ref{'s' * (refs != 1)}, {clips} clip{'s' * (clips != 1)}"
        run.append(f"\n{r['mode']} · {counts}", style="dim")
        started = str(r["started"] or "-")[:16].replace("T", "\n")
        status = Text(r["status"], style="" if r["status"] == "ok" else "yellow")
        table.add_row(run, started, status, str(r["llm_calls"]), f"{r['tokens']:,}", cost, duration)
    return table


@trace_app.command("export", cls=AlrefCommand)
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
