"""How alref's command line fits a terminal of any width, 80 columns included (the width when piped).

- Help: click's plain layout, which wraps the text and never cuts an option name, with the options
  grouped by their help panel (Models, Method, LLM, …), real metavars (``FILE``, ``DIR``, ``N``, ``URL``,
  ``TEXT``; a choice as ``<a|b|c>``), the defaults, and a group's commands with their whole first
  paragraph. Every command is an :class:`AlrefCommand` (:class:`alref.options.SettingsCommand` is one)
  and every group an :class:`AlrefGroup`; tests/test_terminal_width.py checks that none is left out.
- Usage errors (an unknown option or command, a missing value): :func:`usage_error` words them in
  alref's one line, ``alref: error: …``, with click's closest suggestion.
- Output: :func:`console` wraps at word boundaries (a long id or path folds, it is never cut).
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

try:  # typer 0.2x carries its own copy of click, whose exceptions and classes its commands use
    from typer import _click as click
except ImportError:  # pragma: no cover - an older typer on the click package
    import click  # type: ignore[no-redef]

# metavars by parameter name, where the type alone says too little
_NAMED = {
    "out": "DIR", "root": "DIR", "cache_dir": "DIR", "db": "FILE", "config": "FILE", "manifest": "FILE",
    "html": "FILE", "categories": "FILE", "audio": "FILE", "llm": "MODEL", "models": "PROFILE",
    "grounding": "NAME", "segmentation": "NAME", "resume": "THREAD", "host": "HOST", "split": "NAME",
    "videos": "NAME", "ref": "TEXT",
}  # fmt: skip


def metavar(param: click.Parameter) -> str | None:
    """The metavar help and usage show for ``param``: None for a flag and for a choice (typer shows
    ``<a|b|c>``), else a word in capitals that says what to write."""
    if isinstance(param, TyperArgument):
        return (param.name or "value").upper()
    if not isinstance(param, TyperOption) or param.is_flag or param.count:
        return None
    desc = param.type_descriptor
    if desc.is_choice:
        return None if len(" ".join(_choices(param))) <= 30 else (param.name or "choice").upper()
    name = param.name or ""
    annotation = desc.annotation
    if desc.is_list:
        (annotation,) = getattr(annotation, "__args__", (str,))
    if name in _NAMED:
        return _NAMED[name]
    if desc.is_path:
        return {"file": "FILE", "dir": "DIR"}.get(desc.path_type, "PATH")
    if name.endswith("_url") or name == "url":
        return "URL"
    if name.endswith("_model"):
        return "ID|DIR"
    if name.endswith("address"):
        return "ADDRESS"
    if annotation is int:
        return "N"
    if annotation is float:
        return "X"
    return "TEXT"


def _choices(param: TyperOption) -> list[str]:
    return [str(getattr(c, "value", c)) for c in param.type_descriptor.choices or ()]


def _fill_metavars(params: Iterable[click.Parameter]) -> None:
    """Each parameter's metavar; a choice too long for one (``--protocol``) is a word, and its help lists
    the choices, which wrap."""
    for param in params:
        if param.metavar is None:
            param.metavar = metavar(param)
            if isinstance(param, TyperOption) and param.metavar and param.type_descriptor.is_choice:
                listed = ", ".join(_choices(param))
                param.help = f"{param.help or ''} (one of: {listed})".strip()


def first_paragraph(text: str | None) -> str:
    """A help text's first paragraph on one line (a docstring's line breaks are not the reader's)."""
    return " ".join(inspect.cleandoc(text or "").split("\n\n")[0].split())


def _wrap(text: str, width: int, indent: str = "") -> str:
    """``text`` filled to ``width``, breaking only at spaces: an option a help text names (``--no-overlap``)
    and a hyphenated word stay whole, and so does a short ``[default: 50]``; only a word longer than the
    line is folded."""
    glued = re.sub(r"\[[^\[\]]{1,24}\]", lambda m: m.group(0).replace(" ", "\xa0"), " ".join(text.split()))
    filled = textwrap.fill(glued, max(width, 10), initial_indent=indent, subsequent_indent=indent,
                           break_on_hyphens=False)  # fmt: skip
    return filled.replace("\xa0", " ")


class HelpFormatter(click.formatting.HelpFormatter):
    """click's help layout, wrapped with :func:`_wrap` (click's own wrapping breaks at hyphens)."""

    def write_text(self, text: str) -> None:
        paragraphs = [p for p in inspect.cleandoc(text).split("\n\n") if p.strip()]
        self.write("\n\n".join(_wrap(p, self.width, " " * self.current_indent) for p in paragraphs) + "\n")

    def write_dl(self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        rows = list(rows)
        first_col = min(max((len(term) for term, _ in rows), default=0), col_max) + col_spacing
        margin = " " * (first_col + self.current_indent)
        for term, text in rows:
            self.write(" " * self.current_indent + term)
            if not text:
                self.write("\n")
                continue
            if len(term) <= first_col - col_spacing:
                self.write(" " * (first_col - len(term)))
            else:  # a long option: its help starts on the next line
                self.write("\n" + margin)
            lines = _wrap(text, self.width - first_col - self.current_indent).splitlines() or [""]
            self.write(lines[0] + "\n" + "".join(f"{margin}{line}\n" for line in lines[1:]))


class HelpContext(typer.Context):
    formatter_class = HelpFormatter


def _format_options(command: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """The arguments, the options, then one section per help panel, in the order the command lists them."""
    sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        if isinstance(param, TyperArgument):
            term = param.display_name_raw + ("..." if param.nargs != 1 else "")
            sections["Arguments"].append((term, record[1]))
            continue
        panel = getattr(param, "rich_help_panel", None) or "Options"
        sections.setdefault(panel, []).append(record)
    for title, rows in sections.items():
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


def _usage_pieces(command: click.Command, ctx: click.Context) -> list[str]:
    """``[OPTIONS] VIDEO [REFERENCE]``: a required argument bare, an optional one in brackets."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = param.display_name_raw
            name = name if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
    return pieces


class _FitsEighty:
    """What a command and a group share: the help context, real metavars, options laid out to fit."""

    context_class = HelpContext

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _fill_metavars(self.params)  # type: ignore[attr-defined]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_options(self, ctx, formatter)


class AlrefCommand(_FitsEighty, TyperCommand):
    """A command whose help fits 80 columns (see the module docstring)."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return _usage_pieces(self, ctx)


class AlrefGroup(_FitsEighty, TyperGroup):
    """A group whose help fits 80 columns: its options as a command's, each subcommand with its whole
    first paragraph (click cuts it at the width with "...")."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, first_paragraph(command.help or command.short_help)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def usage_error(error: click.exceptions.ClickException) -> str:
    """A click error (unknown option or command, missing or bad value) in alref's one-line form, without
    ``alref: error:``: what was wrong, click's closest suggestion, where the help is."""
    ctx = getattr(error, "ctx", None)
    where = ctx.command_path if ctx is not None else "alref"
    if isinstance(error, click.exceptions.NoSuchOption):
        message = f"no such option {error.option_name} for {where}"
        if error.possibilities:
            message += f"; did you mean {error.possibilities[0]}?"
    elif isinstance(error, click.exceptions.MissingParameter) and error.param is not None:
        param = error.param
        named = (
            f"argument {param.metavar or param.name}" if isinstance(param, TyperArgument) else param.opts[0]
        )
        message = f"missing {named} for {where}"
    else:  # typer words an unknown command "No such command 'x'. Did you mean 'y'?"
        text = (
            " ".join(error.format_message().split()).rstrip(".").replace(". Did you mean", "; did you mean")
        )
        message = text[:1].lower() + text[1:] if text[1:2].islower() else text
    if ctx is not None and isinstance(error, click.exceptions.UsageError):
        message += f" (see {where} --help)"
    return message


def console(stderr: bool = False, **kwargs: Any) -> Any:
    """A rich console for tables and reports: it wraps at word boundaries at the terminal's width (80
    when piped, or COLUMNS) and folds a word longer than the line, never cutting it."""
    from rich.console import Console

    return Console(stderr=stderr, emoji=False, highlight=False, **kwargs)
