"""At 80 columns (a small window, or any pipe) everything alref prints is whole: every command's help
(option names, metavars, defaults, help text word for word) and the main tables (`trace list`, `trace
show`, `doctor`, `tools list`, `models list`) fit the width and cut no id, answer or word; usage errors
are one line, `alref: error: …`, exit 2; `alref --version` prints the version."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest
import typer.main
from rich.cells import cell_len
from typer.core import TyperArgument, TyperOption

from alref.cli import app
from alref.terminal import AlrefCommand, AlrefGroup

WIDTH = 80
BAD_METAVARS = re.compile(r"<(bool|str|int|float|path|file|dir|list\[[^>]*\])>|<int range>")
TREE = str.maketrans("", "", "│├└─┃┏┓┗┛━")


@pytest.fixture
def at_80(monkeypatch):
    """COLUMNS=80 for click and for the consoles made per command; the CLI's module consoles too."""
    import alref.cli

    monkeypatch.setenv("COLUMNS", str(WIDTH))
    for console in (alref.cli.out_console, alref.cli.err_console):
        monkeypatch.setattr(console, "width", WIDTH)


def _commands(command=None, path=()):
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _flat(text: str) -> str:
    return " ".join(text.translate(TREE).split())


def _fits(text: str) -> None:
    for line in text.splitlines():
        assert cell_len(line.rstrip()) <= WIDTH, f"{cell_len(line.rstrip())} columns: {line!r}"
    assert "…" not in text, text


def test_every_command_is_one_that_fits():
    for path, command in _commands():
        kind = AlrefGroup if getattr(command, "commands", None) is not None else AlrefCommand
        assert isinstance(command, kind), f"alref {' '.join(path)}: use cls={kind.__name__}"


def test_every_help_fits_80_columns_whole(run_cli, at_80):
    commands = list(_commands())
    assert len(commands) > 15
    for path, command in commands:
        code, out, err = run_cli(*path, "--help")
        where = f"alref {' '.join(path)} --help"
        assert code == 0 and err == "", where
        _fits(out)
        usage, rest = out.split("\n", 1)
        # click marks a help text it cut with "..."; a variadic NAMES... or ARGS... is no cut
        assert not re.search(r"(?<![A-Z\]])\.\.\.", rest), where
        assert not BAD_METAVARS.search(out), (where, BAD_METAVARS.search(out))
        flat = _flat(out)
        if command.help:
            paragraph = " ".join(command.help.split("\n\n")[0].split())
            assert paragraph in flat, where
        for sub in getattr(command, "commands", {}).values():
            assert " ".join((sub.help or "").split("\n\n")[0].split()) in flat, (where, sub.name)
        for param in command.params:
            for name in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
                if name.startswith("-"):
                    assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", out), (where, name)
            if isinstance(param, TyperArgument | TyperOption) and not param.hidden and param.help:
                assert " ".join(param.help.split()) in flat, (where, param.name)  # no word cut
            shown = isinstance(param, TyperOption) and not param.is_flag and param.show_default
            if shown and (param.default is not None or isinstance(param.show_default, str)):
                record = " ".join(param.get_help_record(typer.Context(command))[1].split())
                assert "[default: " in record and record in flat, (where, param.name)


def test_help_metavars_and_brackets(run_cli, at_80):
    _, out, _ = run_cli("segment", "--help")
    flat = _flat(out)
    assert "Usage: alref segment [OPTIONS] [VIDEO] [REFERENCE]" in out
    assert "--manifest FILE" in out and "--clip-frames N" in out and "--box-threshold X" in out
    assert "--llm-base-url URL" in out and "--ref TEXT" in out and "-o, --out DIR" in out
    assert "--llm-json-max-tokens N" in out  # whole, not "--llm-json-max-tok…"
    assert "(needs alref[ray])" in flat  # [ray] is shown, not taken for markup
    assert "frames per clip [default: 50]" in flat and "<best|first|middle>" in out
    for panel in ("Models:", "Method:", "Batch and Ray:", "Outputs:"):
        assert f"\n{panel}\n" in out, panel
    _, out, _ = run_cli("eval", "run", "--help")
    assert "Usage: alref eval run [OPTIONS] DATASET" in out and "--limit N" in out


def _trace(folder: Path, reference: str, answer: str, reason: str, mode: str = "agent") -> Path:
    from alref.trace.record import Tracer

    tracer = Tracer(folder / "trace")
    tracer.event("run_start", references=[reference], clips=1)
    tracer.event("llm_call", step="choose_frame", ref=1, clip=0, ok=True, answer=answer, prompt_tokens=1234,
                 completion_tokens=56, latency_s=2.5, transport_attempts=1, model="gpt-4o")  # fmt: skip
    tracer.event("clip_decided", ref=1, clip=0, valid=True, pivot_frame=3, box_number=2, decided_by="llm",
                 reason=reason)  # fmt: skip
    tracer.event("run_end", status="ok", mode=mode, timings_s={"total": 12.5})
    return folder


ANSWER = (
    "Frame 3 shows the brown dog on the left most clearly: it is mid-jump, fully visible, not occluded by "
    "the fence, and its whole body is inside the frame.\nThe other frames show it blurred or cut off at the "
    'edge. {"frame": 3, "reasoning": "clearest view of the jumping dog"}'
)
REASON = "the LLM chose frame 3 because the dog is mid-jump and fully visible there, then box 2, its outline"


def test_trace_list_and_show_fit_80_columns(run_cli, at_80, tmp_path):
    root = tmp_path / "runs"
    _trace(root / "dogs" / "expression-0007", "the dog on the left that jumps over the fence", ANSWER, REASON,
           mode="agent (1 of 1 clips fell back: the LLM server did not answer)")  # fmt: skip
    _trace(root / "cats-2026", "a cat", "Frame 0.", "frame 0", mode="baseline")
    code, out, err = run_cli("trace", "list", root)
    assert code == 0, err
    _fits(out)
    for word in ("dogs/expression-0007", "cats-2026", "2026-", "ok", "1,290", "12.5s", "baseline"):
        assert any(word in line for line in out.splitlines()), word
    words = set(out.split())  # the mode wraps in its column, at words
    assert (
        set("agent (1 of 1 clips fell back: the LLM server did not answer) · 1 ref, 1 clip".split()) <= words
    )

    code, out, err = run_cli("trace", "show", root / "dogs" / "expression-0007")
    assert code == 0, err
    _fits(out)
    flat = _flat(out)
    assert " ".join(ANSWER.split()) in flat and REASON in flat  # in full, wrapped at words
    assert "the dog on the left that jumps over the fence" in flat
    code, out, _ = run_cli("trace", "show", root / "dogs" / "expression-0007", "--full")
    assert code == 0 and "edge." in out
    lines = [line.translate(TREE).strip() for line in out.splitlines()]
    assert any(line.startswith("The other frames show it blurred") for line in lines)  # its own line, raw


def test_tables_keep_every_model_id_whole(run_cli, at_80):
    from alref.doctor import model_rows
    from alref.tools.cli import tool_rows

    for args, ids in (
        (("models", "list"), {row["model"] for row in model_rows()}),
        (("tools", "list"), {row["model"] for row in tool_rows() if row.get("model")}),
        (("doctor", "--models", "smoke"), {row["model"] for row in model_rows()}),
    ):
        code, out, err = run_cli(*args)
        assert code == 0, err
        _fits(out)
        for model in ids:  # each on one line, whole
            assert any(re.search(rf"(?<!\S){re.escape(model)}(?!\S)", line) for line in out.splitlines()), (
                args,
                model,
            )


@pytest.mark.parametrize(
    "args, expected",
    [
        (("segment", "v.mp4", "x", "--modles", "smoke"), "no such option --modles for alref segment; did you mean --models?"),
        (("segmnt",), "no such command 'segmnt'; did you mean 'segment'?"),
        (("trace", "lst"), "no such command 'lst'; did you mean 'list'? (see alref trace --help)"),
        (("models", "list", "--jsn"), "no such option --jsn for alref models list; did you mean --json?"),
        (("eval", "run"), "missing argument DATASET for alref eval run"),
        (("app", "--port", "many"), "invalid value for '--port'"),
        (("segment", "v.mp4", "x", "--clip-frames"), "option '--clip-frames' requires an argument"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_exit_2(run_cli, at_80, args, expected):
    code, out, err = run_cli(*args)
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith("alref: error: ") and expected in lines[0], lines[0]
    assert "╭" not in err and "Traceback" not in err


def test_version(run_cli):
    code, out, err = run_cli("--version")
    assert code == 0 and out == f"alref {version('alref')}\n" and err == ""
