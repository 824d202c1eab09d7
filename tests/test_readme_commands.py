"""The README's and the manual's shell commands, as a new user types them, so the documentation stays true.

The pages are read in order: README.md first, then every page of ``docs/`` in the order of
``mkdocs.yml``'s ``nav`` (:func:`pages`), so a page may use what an earlier one made (``runs/smoke``
from the README's first run, ``runs/gpt`` from the strategies page for the outputs page's trace
commands). Every ``alref …`` line of a ```bash block (backslash continuations joined, ``&&`` chains split, ``echo … |``
read as stdin and ``> FILE`` as the output file) is parsed by the real CLI (every command and option
exists, every value converts). Then, in a folder holding a copy of ``examples/``, each one runs in order
as documented (a line shown again on a later page, as the README's overview repeats the manual's, runs
once), with what a test machine lacks substituted:

- models: ``--models smoke`` where a command would download the default models (the tests are
  offline), except the set-up command the README documents to stop offline with exit 3 and one line;
- LLM: ``--llm-base-url`` points at the scripted OpenAI-compatible server (tests/llm_server.py), which
  answers GPT-PS's steps (tests/agent_script.py) and gives the chat plain answers;
- data: ``data/ref-davis``, ``data/mevis`` and ``data/ref-youtube-vos`` are tiny synthetic datasets
  (tests/eval_synth.py); a conversation id is the one the chat above printed.

A line with a placeholder only the user can fill (their frames, their AVSBench copy, …) is parsed, not
run; so is an interactive one. :data:`PARSE_ONLY` and :data:`PLACEHOLDERS` give each reason.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import eval_synth
import pytest
import typer.main
from agent_script import Script
from llm_server import Reply

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MKDOCS = ROOT / "mkdocs.yml"


def pages() -> list[Path]:
    """README.md, then the manual's pages in ``mkdocs.yml``'s nav order (``- Title: page.md`` lines)."""
    nav = re.findall(r"^\s*- .*:\s*(\S+\.md)\s*$", MKDOCS.read_text(encoding="utf-8"), re.M)
    return [README, *(ROOT / "docs" / page for page in nav)]


def manual_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in pages())


# words of a line (README or manual) that stand for something only the user has: such a line is parsed, not run
PLACEHOLDERS = {
    "frames_folder/": "the user's folder of frames",
    "frames/": "the user's folder of frames",
    "sound.wav": "the user's sound file",
    "clip.mp4": "the user's video",
    "data/AVSBench/Single-source": "the user's AVSBench copy (its video names vidA, vidB)",
    "my_masks/": "the user's masks",
    "videos.jsonl": "the user's manifest (and, with --ray-address, their Ray cluster; tests/test_ray_batch.py runs one)",
}
# lines (as written in the README or the manual) that are parsed, not run, and why
PARSE_ONLY = {
    "alref chat examples/shapes.mp4": "interactive: it waits for typed turns",
    "alref app examples/shapes.mp4 --llm gpt-4o": "a web server: it serves until interrupted (tests/test_web_app.py runs it)",
    "alref app --models smoke --llm m --llm-base-url http://127.0.0.1:8000/v1 --port 7861": "a web server: it serves until interrupted",
    "alref mcp --out ~/alref-out": "an MCP server on stdio: it serves its client (tests/test_mcp.py runs it)",
    "alref mcp --http --port 8765 --models smoke": "an MCP server: it serves until interrupted (tests/test_mcp.py runs it)",
}
# the command the README says stops offline at once, naming the model (exit 3)
OFFLINE = 'alref segment examples/shapes.mp4 "the red square" --out runs/shapes'
# the manual's install of the example plugin (Extending), done before its commands run
PLUGIN_INSTALL = "pip install -e tests/plugins/alref-example-grounding"
# the commands that load models (``--models smoke`` instead of the default profile)
RUNS_WITH_MODELS = ("segment", "chat", "eval run")


@dataclass
class Command:
    line: str  # the line as written
    args: list[str]  # after `alref`
    page: str = "README.md"  # where it is written
    stdin: str | None = None
    stdout_to: str | None = None

    @property
    def words(self) -> str:
        """The command's name: ``segment``, ``eval run``, ``models pull``, …"""
        groups = ("eval", "models", "trace", "tools")
        return " ".join(self.args[:2]) if self.args[0] in groups else self.args[0]


def _line(tokens: list[str]) -> str:
    return " ".join(f'"{t}"' if " " in t else t for t in tokens)


def readme_commands() -> list[Command]:
    """Every ``alref`` command of the README and the manual, page by page in :func:`pages` order."""
    return [command for page in pages() for command in page_commands(page)]


def page_commands(page: Path) -> list[Command]:
    commands = []
    name = page.relative_to(ROOT).as_posix()
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            tokens = shlex.split(line, comments=True)
            chain: list[list[str]] = [[]]
            for token in tokens:
                chain.append([]) if token == "&&" else chain[-1].append(token)
            for part in chain:
                stdin = stdout_to = None
                if "|" in part:
                    left, part = part[: part.index("|")], part[part.index("|") + 1 :]
                    assert left[0] == "echo", line
                    stdin = " ".join(left[1:]) + "\n"
                if ">" in part:
                    part, stdout_to = part[: part.index(">")], part[part.index(">") + 1]
                if part and part[0] == "alref":
                    command = Command(_line(part), part[1:], page=name, stdin=stdin, stdout_to=stdout_to)
                    commands.append(command)
    return commands


def _kind(command: Command) -> tuple[str, str]:
    """("parse", why) or ("run", "")."""
    if command.line in PARSE_ONLY:
        return "parse", PARSE_ONLY[command.line]
    for word, why in PLACEHOLDERS.items():
        if word in command.args:
            return "parse", why
    return "run", ""


def test_every_page_of_the_manual_is_read():
    found = pages()
    assert found[0] == README and len(found) == len(set(found))
    assert all(page.is_file() for page in found), "mkdocs.yml's nav names a page that does not exist"
    assert set(found[1:]) == set((ROOT / "docs").glob("*.md")), "a docs/ page missing from mkdocs.yml's nav"


def test_the_readme_has_the_commands_this_test_knows():
    commands = readme_commands()
    lines = {c.line for c in commands}
    assert len(commands) >= 35 and OFFLINE in lines
    assert OFFLINE in {c.line for c in page_commands(README)}, "the README's set-up command"
    assert set(PARSE_ONLY) <= lines, "a PARSE_ONLY line is no longer in the README or the manual: drop it"
    words = {w for c in commands for w in c.args}
    assert set(PLACEHOLDERS) <= words, "a placeholder is no longer in the README or the manual: drop it"
    assert {c.words for c in commands} >= {
        "segment", "chat", "trace show", "trace list", "trace export", "eval run", "eval score", "doctor",
        "tools list", "models list", "models pull",
    }  # fmt: skip


def _parse(args: list[str]) -> None:
    """Parse ``alref ARGS`` as the real CLI does (values converted and checked) without running it."""
    from alref.cli import _audio_flag, app

    command = typer.main.get_command(app)
    ctx = command.make_context("alref", _audio_flag(args))
    while hasattr(command, "resolve_command"):  # a group (typer's own click)
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
        name, command, rest = command.resolve_command(ctx, [*protected, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
    assert not ctx.args, f"unexpected arguments {ctx.args}"


@pytest.mark.parametrize("command", readme_commands(), ids=lambda c: f"{c.page}: {c.line[:60]}")
def test_every_readme_command_parses(command):
    _parse(command.args)


def _substitute(command: Command, url: str, thread: str | None) -> list[str]:
    """The command with the test machine's models, server and data (see the module docstring)."""
    args = list(command.args)
    if command.line == OFFLINE:
        return args
    if any(" ".join(args).startswith(w) for w in RUNS_WITH_MODELS) and "--list" not in args:
        if "--models" in args:
            args[args.index("--models") + 1] = "smoke"
        else:
            args += ["--models", "smoke"]
    if "--llm" in args or (args[0] == "chat" and "--list" not in args):
        if "--llm" not in args:
            args += ["--llm", "scripted"]  # the README's chat takes its model from OPENAI_API_KEY's default
        if "--llm-base-url" in args:
            args[args.index("--llm-base-url") + 1] = url
        else:
            args += ["--llm-base-url", url]
    if "--resume" in args:
        assert thread, "the manual resumes a conversation before it starts one"
        args[args.index("--resume") + 1] = thread
    return args


def _offline_message() -> tuple[str, str]:
    """The README's one-line offline error, as the text before and after its "(…)"."""
    text = README.read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("alref: error: model 'IDEA"))
    before, after = line.split("(…)")
    return before, after


def _workspace(folder: Path) -> None:
    shutil.copytree(ROOT / "examples", folder / "examples")
    eval_synth.write_refdavis(folder / "data" / "ref-davis", videos=2, frames=3, size=(32, 40))
    eval_synth.write_mevis(folder / "data" / "mevis", frames=3)
    eval_synth.write_refytvos(folder / "data" / "ref-youtube-vos", frames=2)


def _check(command: Command, args: list[str], out: str, err: str, folder: Path) -> None:
    """What the README and the manual say each kind of command leaves behind."""
    joined = " ".join(args)
    if args[0] == "segment" and "--manifest" in args:  # a batch: its summary, one folder per video
        summary = json.loads((folder / args[args.index("--out") + 1] / "summary.json").read_text())
        assert summary["failed"] == 0 and not summary["bad_rows"] and summary["smoke"] is True
        assert all(
            json.loads((Path(r["out"]) / "result.json").read_text())["smoke"] for r in summary["records"]
        )
    elif args[0] == "segment" and "--out" in args:
        result = json.loads((folder / args[args.index("--out") + 1] / "result.json").read_text())
        assert result["status"] == "ok" and result["smoke"] is True
        assert result["mode"] == ("agent" if "--llm" in args else "baseline")
    if command.stdout_to:
        assert json.loads((folder / command.stdout_to).read_text())["smoke"] is True
    if joined.startswith("models pull smoke"):
        assert "smoke:clap: " in out and "👏" not in out
    if joined.startswith("trace export"):
        assert (folder / args[args.index("--html") + 1]).stat().st_size > 1000
    if joined.startswith("trace show") and "--json" not in args:
        assert "reference 1" in out and "LLM" in out
    if joined.startswith("eval run ref-youtube-vos"):
        assert (folder / args[args.index("--out") + 1] / "predictions" / "submission.zip").is_file()
    if args[0] == "doctor" and "--llm" in args:  # the scripted server lists only "scripted"
        assert f"does not list the model {args[args.index('--llm') + 1]}" in out and "    scripted" in out
    if args[0] == "chat" and "--json" in args:
        assert [json.loads(line)["status"] for line in out.splitlines()] == ["ok"]
    if args[0] == "chat" and "-m" in args:
        assert out.count("alref:") == args.count("-m")  # one answer per turn


@pytest.mark.slow
def test_the_readme_commands_run_as_documented(run_cli, llm_server, tmp_path, monkeypatch):
    """Each README and manual command exits 0 (or as documented), in page order, in one folder (the trace
    commands read the GPT-PS run, `--resume` the conversation started above)."""
    from test_registry import _add_site, _remove_site, install_example_plugin

    _workspace(tmp_path)
    assert PLUGIN_INSTALL in manual_text()
    site = install_example_plugin(tmp_path / "plugin")  # the README's pip install, into a folder of its own
    _add_site(site)
    try:
        _run_all(run_cli, llm_server, tmp_path, monkeypatch)
    finally:
        _remove_site(site, [m for m in sys.modules if m.startswith("alref_example_grounding")])


def _run_all(run_cli, llm_server, tmp_path: Path, monkeypatch) -> None:
    script = Script()
    llm_server.default = lambda body: (
        Reply("Noted.") if body.get("tools") else Reply(script(body["messages"]))
    )
    monkeypatch.setenv("ALREF_LLM_BACKOFF", "0")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: no prompt waits
    thread, failures, ran, done = None, [], 0, set()
    for command in readme_commands():
        kind, _ = _kind(command)
        if kind == "parse" or command.line in done:  # a line shown again runs once
            continue
        done.add(command.line)
        args = _substitute(command, llm_server.base_url, thread)
        if command.stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(command.stdin))
        code, out, err = run_cli(*args)
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        ran += 1
        if command.stdout_to:
            (tmp_path / command.stdout_to).write_text(out)
        if match := re.search(r"alref chat --resume (\w+)", err):
            thread = match.group(1)
        try:
            if command.line == OFFLINE:
                before, after = _offline_message()
                message = " ".join(err.split())
                assert code == 3 and message.startswith(before) and after.strip() in message, err
                assert err.count("alref: error") == 1
            elif command.words == "models pull" and "smoke" not in args:
                assert code == 3 and "could not download model" in err and err.count("alref: error") == 1, err
            else:
                assert code == 0, f"exit {code}: {err[-2000:]}"
                _check(command, args, out, err, tmp_path)
        except (AssertionError, KeyError, OSError, ValueError) as exc:
            failures.append(f"{command.page}: {command.line}\n  ran: alref {shlex.join(args)}\n  {exc}")
    assert not failures, "README and manual commands that do not work as shown:\n" + "\n".join(failures)
    assert ran >= 30
