"""Each setting is declared once, in Settings; the commands' options are generated from it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import typer.main
from pydantic import Field
from typer.testing import CliRunner

from alref.cli import app
from alref.config import LLM, METHOD, MODELS, PANELS, Settings
from alref.options import Given, SettingsCommand, cli_of, not_flags, option_fields, settings_options

DOCS = Path(__file__).resolve().parents[1] / "docs"  # the manual (README.md is its overview)
NOT_FLAGS = {"llm_api_key": "keys stay out of shell history and `ps` (the manual: no flag)",
             "mcp": "a table of MCP servers: alref.toml only"}  # fmt: skip


def _command(*path: str):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _options(*path: str) -> dict[str, Any]:
    return {p.name: p for p in _command(*path).params if p.param_type_name == "option"}


def _flags(*path: str) -> set[str]:
    return {flag for p in _options(*path).values() for flag in [*p.opts, *p.secondary_opts]}


def _doc_flags(page: str, section: str | None = None, until: str | None = None) -> set[str]:
    """The flags a page of the manual names, or the part of it from ``section`` to ``until``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(section) if section else 0
    end = text.index(until, start) if until else len(text)
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text[start:end]))


def test_every_setting_is_a_segment_option_or_excluded_with_a_reason():
    assert not_flags().keys() == NOT_FLAGS.keys()
    assert all(reason.strip() for reason in not_flags().values())
    segment = _options("segment")
    for name in Settings.model_fields:
        assert (name in segment) != (name in NOT_FLAGS), name
    assert "llm_api_key" not in segment and "--llm-api-key" not in _flags("segment")


def test_metadata_names_only_known_panels():
    titles = {panel.panel for panel in PANELS}
    for name, field in Settings.model_fields.items():
        cli = cli_of(field)
        assert cli.not_a_flag or cli.panel in titles, name
        assert field.description and "[" not in field.description, f"{name}: rich markup eats [..]"


def test_generated_help_is_the_description_and_the_default():
    options = _options("segment")
    for name, field in option_fields().items():
        param = options[name]
        assert param.help == field.description, name
        assert param.default == field.get_default(call_default_factory=True), name
        assert param.show_default is True, name
        assert param.rich_help_panel == (cli_of(field).panel or None), name
    assert options["overlay"].secondary_opts == ["--no-overlay"]  # a bool that is on by default
    assert options["cache"].secondary_opts == ["--no-cache"]
    assert options["offline"].is_flag and not options["offline"].secondary_opts


def test_help_shows_the_defaults(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_cli("segment", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "frames per clip [default: 50]" in text
    assert "GroundingDINO box threshold (low: candidates, not answers) [default: 0.15]" in text
    assert "<best|first|middle>" in text and "[default: best]" in text  # a Literal is choices
    assert "[default: (alref-out/<video name>)]" in text  # hand-written --out
    for panel in PANELS:
        assert panel.panel in text


def test_segment_help_lists_the_manual_flags(run_cli, monkeypatch):
    not_alref = {"--limit-mm-per-prompt", "--head", "--port", "--address"}  # vLLM's; `ray start`'s
    readme = (
        _doc_flags("segment.md", "## `alref segment", "## Correcting an object")
        | _doc_flags("strategies.md")
        | _doc_flags("sound.md")
        | _doc_flags("batches.md")
    ) - not_alref
    assert {"--object", "--frame", "--point", "--negative", "--box"} <= _doc_flags(
        "segment.md", "## Correcting an object"
    ) & _flags("refine")
    assert {"--clip-frames", "--no-cache", "--no-overlay", "--audio", "--energy-db"} <= readme
    assert readme <= _flags("segment")
    monkeypatch.setenv("COLUMNS", "250")
    _, out, _ = run_cli("segment", "--help")
    assert readme <= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out))


def test_chat_and_eval_run_take_the_manual_flags_and_the_shared_settings():
    assert _doc_flags("chat-and-app.md", "## `alref chat", "## `alref app") <= _flags("chat")
    app = _doc_flags("chat-and-app.md", "## `alref app", "## Correcting a mask")
    app_flags = app - {"--resume"}  # `alref chat --resume`
    assert {"--host", "--port", "--out", "--db"} <= app_flags <= _flags("app")
    assert set(option_fields(panels=(MODELS, LLM), exclude=("no_llm",))) <= _options("app").keys()
    eval_flags = _flags("eval", "run") | _flags("eval", "score")
    assert _doc_flags("eval.md") <= eval_flags
    chat = _options("chat")
    assert set(option_fields(panels=(MODELS, LLM), exclude=("no_llm",))) <= chat.keys()
    assert "clip_frames" not in chat and "no_llm" not in chat
    run = _options("eval", "run")
    assert set(option_fields(exclude=("overlay",))) <= run.keys()
    assert run["overlay"].default is False  # benchmarks write no overlay unless asked


class _Bigger(Settings):
    beam_width: Annotated[int, METHOD] = Field(3, ge=1, description="beams kept per clip")
    plain_knob: str = Field("x", description="a setting with no Cli marker")


def _app_of(settings_cls: type[Settings]) -> typer.Typer:
    sub = typer.Typer()

    @sub.command(cls=SettingsCommand)
    @settings_options(settings_cls=settings_cls)
    def run(
        video: Annotated[str, typer.Argument()],
        force: Annotated[bool, typer.Option("--force")] = False,
        *,
        given: Given,
    ) -> None:
        print(
            json.dumps(
                {"video": video, "force": force, "given": given, "beam": settings_cls(**given).beam_width}
            )
        )

    @sub.command()
    def other() -> None: ...

    return sub


def test_a_new_setting_is_an_option_with_no_other_edit():
    sub, runner = _app_of(_Bigger), CliRunner()
    result = runner.invoke(sub, ["run", "v.mp4", "--beam-width", "7", "--plain-knob", "y", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "video": "v.mp4",
        "force": False,
        "given": {"beam_width": 7, "plain_knob": "y", "cache": False},
        "beam": 7,
    }
    result = runner.invoke(sub, ["run", "v.mp4"])
    assert json.loads(result.output)["given"] == {} and json.loads(result.output)["beam"] == 3
    result = runner.invoke(sub, ["run", "--help"], env={"COLUMNS": "250"})
    help_text = " ".join(result.output.split())
    assert "--beam-width" in help_text and "beams kept per clip [default: 3]" in help_text
    assert "--plain-knob" in help_text and "--clip-frames" in help_text


def test_a_command_parameter_named_like_a_setting_is_refused():
    with pytest.raises(TypeError, match="clip_frames"):

        @settings_options()
        def clash(clip_frames: int = 1, *, given: Given) -> None: ...

    with pytest.raises(TypeError, match="given"):

        @settings_options()
        def no_mapping(video: str) -> None: ...


@pytest.fixture
def captured_settings(monkeypatch):
    """`alref segment` with the pipeline replaced: what settings it would run with."""
    import alref.pipeline.run

    seen: list[Settings] = []

    def fake_segment_video(video, references, out_dir, settings, reporter, **kwargs):
        seen.append(settings)
        return {"settings": settings.public_dict()}

    monkeypatch.setattr(alref.pipeline.run, "segment_video", fake_segment_video)
    return seen


def test_absent_flags_keep_the_environment_and_no_cache_turns_the_cache_off(
    run_cli, captured_settings, monkeypatch
):
    monkeypatch.setenv("ALREF_CLIP_FRAMES", "7")
    monkeypatch.setenv("ALREF_SAMPLES", "2")
    monkeypatch.setenv("ALREF_OVERLAY", "false")
    code, out, err = run_cli("segment", "v.mp4", "x", "--samples", "3", "--no-cache", "--json")
    assert code == 0, err
    settings = captured_settings[-1]
    assert (settings.clip_frames, settings.samples, settings.cache, settings.overlay) == (7, 3, False, False)
    assert json.loads(out)["settings"]["cache"] is False
    code, _, err = run_cli("segment", "v.mp4", "x", "--overlay", "--clip-frames", "50", "--json")
    assert code == 0, err
    settings = captured_settings[-1]
    assert (settings.clip_frames, settings.samples, settings.cache, settings.overlay) == (50, 2, True, True)


@pytest.mark.parametrize(
    "args, field",
    [
        (["--pivot", "sideways"], "pivot"),
        (["--clip-frames", "0"], "clip_frames"),
        (["--clip-frames", "ten"], "clip_frames"),
        (["--device", "tpu"], "device"),
        (["--box-threshold", "2"], "box_threshold"),
    ],
    ids=["choice", "range", "not-an-int", "device", "threshold"],
)
def test_a_bad_value_is_one_line_and_exit_2(run_cli, captured_settings, args, field):
    code, out, err = run_cli("segment", "v.mp4", "x", *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == "" and not captured_settings
    assert len(lines) == 1 and lines[0].startswith(f"alref: error: invalid settings: {field}: "), err
