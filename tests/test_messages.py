"""What the user sees says what happened: every ``--flag`` alref's text names is a flag of the CLI, the
LLM errors say what to do in one sentence, the trace shows frame 0, rich prints names literally, a
chat exports where the README says, and a benchmark run that produced nothing does not lock its folder."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import synth
import typer.main
from llm_server import ScriptedOpenAIServer, Status

from alref.agent.answers import FrameChoice
from alref.agent.llm import LLMClient, LLMUnavailableError, Turn
from alref.cli import app
from alref.config import Settings

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")

# flags that alref's text names but that are no alref flag, each with the reason
NOT_ALREF_FLAGS = {
    "--help": "click adds it to every command (it is not among a command's params)",
    "--name": "alref/config.py's docstring: how a setting `name` is spelled as a flag",
    "--no-name": "alref/config.py's docstring: the off switch of a bool setting `name`",
    "--head": "Ray's own `ray start --head`, named where a Ray cluster cannot be reached",
}


def cli_flags() -> set[str]:
    """Every option of every command and subcommand of `alref`, with its secondary (--no-…) spellings."""
    found: set[str] = set()

    def walk(command) -> None:
        for param in command.params:
            found.update(getattr(param, "opts", ()))
            found.update(getattr(param, "secondary_opts", ()))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant; an f-string as one text with ``{}`` where its values go."""
    parts_of_fstrings = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            found.append((node.lineno, text))
            parts_of_fstrings.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in parts_of_fstrings
        ):
            found.append((node.lineno, node.value))
    return found


def named_flags() -> dict[str, set[str]]:
    """Every ``--flag`` spelled in a string under alref/ (messages, help, f-string parts, docstrings,
    prompt and data files) -> where."""
    where: dict[str, set[str]] = {}
    for path in sorted((ROOT / "alref").rglob("*")):
        if not path.is_file():
            continue
        name = str(path.relative_to(ROOT))
        if path.suffix == ".py":
            for lineno, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
                for match in FLAG.finditer(text):
                    if text[match.end() : match.end() + 2] not in ("{}", "-{"):  # f"--{name}": not a flag
                        where.setdefault(match.group(), set()).add(f"{name}:{lineno}")
        elif path.suffix in (".txt", ".md", ".json", ".toml"):
            for flag in FLAG.findall(path.read_text(encoding="utf-8", errors="replace")):
                where.setdefault(flag, set()).add(name)
    return where


def test_every_flag_alref_names_exists():
    flags = cli_flags()
    assert {"--llm", "--llm-base-url", "--models", "--no-overlay", "--json", "--resume"} <= flags
    bad = {flag: sorted(at) for flag, at in named_flags().items() if flag not in flags | set(NOT_ALREF_FLAGS)}
    assert not bad, f"flags named in alref's text that no command takes: {bad}"


def test_the_allow_list_is_current():
    named, flags = named_flags(), cli_flags()
    assert set(NOT_ALREF_FLAGS) <= set(named), "an allow-listed flag is no longer named: drop it"
    assert not set(NOT_ALREF_FLAGS) & flags, "an allow-listed flag is an alref flag now: drop it"


def _client(url: str, tmp_path: Path, key: str = "sk-test-0123456789") -> LLMClient:
    settings = Settings(
        llm="vision-test", llm_base_url=url, llm_api_key=key, cache_dir=tmp_path / "cache", cache=False,
        llm_transport_retries=0, llm_backoff=0.0,
    )  # fmt: skip
    return LLMClient(settings, sleep=lambda _s: None)


def _ask(client: LLMClient) -> LLMUnavailableError:
    with pytest.raises(LLMUnavailableError) as info:
        client.ask([Turn("user", "Which frame?")], FrameChoice, step="choose_frame")
    return info.value


def test_a_refused_key_names_the_variables_it_comes_from_not_a_flag(llm_server, tmp_path):
    llm_server.push(
        Status(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request"}})
    )
    error = _ask(_client(llm_server.base_url, tmp_path))
    message = str(error)
    assert error.kind == "auth" and "HTTP 401" in message and llm_server.base_url in message
    assert "ALREF_LLM_API_KEY" in message and "OPENAI_API_KEY" in message
    assert "--llm-api-key" not in message and "sk-test-0123456789" not in message
    assert set(FLAG.findall(message)) <= cli_flags()


def test_a_refused_connection_is_one_sentence_naming_the_url(tmp_path):
    url = ScriptedOpenAIServer.closed_port_url()
    message = str(_ask(_client(url, tmp_path)))
    assert message == (
        f"cannot connect to the LLM server at {url} (connection refused; 1 attempt): check that the server "
        "is running and that --llm-base-url is right"
    )
    assert "Connection error" not in message and "\n" not in message


def _trace_run(folder: Path, reference: str) -> Path:
    from alref.trace.record import Tracer

    tracer = Tracer(folder / "trace")
    tracer.event("run_start", references=[reference], clips=1)
    tracer.node_end("choose_frame", ref=1, clip=0, seconds=0.5, output={"frame": 0, "box": None})
    tracer.event("clip_decided", ref=1, clip=0, valid=True, pivot_frame=0, box_number=1, decided_by="llm",
                 reason="frame 0 shows it whole")  # fmt: skip
    tracer.event("run_end", status="ok", timings_s={"total": 1.0})
    return folder


def test_trace_show_prints_frame_0_and_text_as_it_is(run_cli, tmp_path):
    run = _trace_run(tmp_path / "run", "the [bold]red[/bold] :clap: square")
    code, out, err = run_cli("trace", "show", run)
    assert code == 0, err
    assert "frame=0" in out and "frame=," not in out and not out.rstrip().endswith("frame=")
    assert "clip 0 → frame 0, box 1" in out
    assert "the [bold]red[/bold] :clap: square" in out and "👏" not in out


def test_models_pull_smoke_prints_the_names_literally(run_cli):
    code, out, err = run_cli("models", "pull", "smoke")
    assert code == 0, err
    assert "👏" not in out + err
    assert "smoke:clap: " in out and "pulling smoke:clap …" in err
    code, out, _ = run_cli("models", "list")
    assert code == 0 and "laion/clap-htsat-unfused" in out and "👏" not in out


@pytest.mark.slow
def test_chat_export_writes_into_the_chat_folder(tmp_path):
    """README: `export` writes masks/, objects/, palette/, masks.json and objects.json into the chat's
    folder (--out), beside its trace/, as `alref segment` writes a run's outputs."""
    from alref.agent.chat.session import ChatSession
    from alref.config import load_settings

    video = synth.write_shapes_video(
        tmp_path / "v.mp4", num_frames=6, width=64, height=48, fps=6, audio=False
    )
    session = ChatSession(video, tmp_path / "chat", load_settings(models="smoke"))
    session.set_object([(0, [4.0, 4.0, 30.0, 30.0])], "square")
    session.set_object([(1, [30.0, 20.0, 60.0, 44.0])], "circle")
    done = session.export()
    folder = tmp_path / "chat"
    assert Path(done["folder"]) == folder and not (folder / "export").exists()
    assert {"masks", "objects", "palette", "masks.json", "objects.json"} <= {p.name for p in folder.iterdir()}
    assert len(list((folder / "masks").iterdir())) == 6
    session.remove(2)  # one object left: an export leaves no stale objects/ or palette/ behind
    session.export()
    assert not (folder / "objects").exists() and not (folder / "palette").exists()
    assert [o["reference"] for o in json.loads((folder / "masks.json").read_text())["objects"]] == ["square"]


@pytest.mark.slow
def test_an_eval_run_that_failed_loading_models_does_not_lock_its_folder(run_cli, tmp_path):
    import eval_synth

    eval_synth.write_refdavis(tmp_path / "ds", videos=1, frames=3, size=(32, 32), objects=1)
    args = ["eval", "run", "ref-davis", "--root", tmp_path / "ds", "--out", tmp_path / "out"]
    code, _, err = run_cli(*args)  # the default models are not cached and the tests are offline
    assert code == 3 and "not available offline" in err
    assert (tmp_path / "out" / "run.json").is_file()
    code, out, err = run_cli(*args, "--models", "smoke", "--samples", "1", "--clip-frames", "3", "--json")
    assert code == 0, err
    assert json.loads(out)["smoke"] is True
    code, _, err = run_cli(*args, "--models", "smoke", "--samples", "2", "--clip-frames", "3")
    assert code == 2 and "different settings" in err and "--force" in err  # results exist: refused
