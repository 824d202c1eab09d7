"""`alref doctor` takes the LLM flags of `alref segment`, asks the server for its models, says whether
the configured model is among them, prints every id whole, and never prints the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer.main
from llm_server import ScriptedOpenAIServer

from alref.cli import app

MODELS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "models.md"

KEY = "sk-doctor-5ecret-0123456789"
LONG_ID = (
    "organisation-with-a-long-name/" + "a-very-long-vision-model-name-" * 3 + "instruct-q4_K_M-gguf:clap:"
)


@pytest.fixture
def with_key(monkeypatch):
    monkeypatch.setenv("ALREF_LLM_API_KEY", KEY)


def _doctor(run_cli, server: ScriptedOpenAIServer, model: str, *extra: str) -> tuple[int, str, str]:
    return run_cli("doctor", "--llm", model, "--llm-base-url", server.base_url, *extra)


def test_a_listed_model_is_reported_as_listed(run_cli, llm_server, with_key):
    code, out, err = _doctor(run_cli, llm_server, "scripted", "--json")
    assert code == 0, err
    llm = json.loads(out)["llm"]
    assert llm["configured"] and llm["reachable"] and llm["model_listed"] is True
    assert llm["model"] == "scripted" and llm["base_url"] == llm_server.base_url
    assert llm["models"] == ["scripted"] and llm["api_key"] == "set"
    code, out, _ = _doctor(run_cli, llm_server, "scripted")
    assert code == 0 and "reachable; the server lists scripted" in out
    assert KEY not in out


def test_an_unlisted_model_is_named_with_the_ids_the_server_has(run_cli, llm_server, with_key):
    llm_server.models = ["scripted", "qwen2.5-vl:7b"]
    code, out, err = _doctor(run_cli, llm_server, "gpt-4o", "--json")
    assert code == 0, err  # a report: the exit code stays 0
    llm = json.loads(out)["llm"]
    assert llm["reachable"] is True and llm["model_listed"] is False
    assert llm["models"] == ["scripted", "qwen2.5-vl:7b"]
    assert "does not list gpt-4o" in llm["summary"] and "scripted, qwen2.5-vl:7b" in llm["summary"]
    code, out, _ = _doctor(run_cli, llm_server, "gpt-4o")
    assert code == 0
    lines = out.splitlines()
    said = next(i for i, line in enumerate(lines) if "does not list the model gpt-4o" in line)
    assert [line.strip() for line in lines[said + 1 : said + 3]] == ["scripted", "qwen2.5-vl:7b"]


def test_an_ollama_latest_tag_counts_as_the_model(run_cli, llm_server):
    llm_server.models = ["llava:latest"]
    code, out, _ = _doctor(run_cli, llm_server, "llava", "--json")
    assert code == 0 and json.loads(out)["llm"]["model_listed"] is True


def test_long_ids_print_whole_at_80_columns(run_cli, llm_server, with_key, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    llm_server.models = ["scripted", LONG_ID]
    assert len(LONG_ID) > 100
    code, out, err = _doctor(run_cli, llm_server, "gpt-4o")
    assert code == 0, err
    assert LONG_ID in out.splitlines()[-1]  # whole, on one line, the emoji code not replaced
    assert "…" not in out and "👏" not in out and KEY not in out + err
    code, out, _ = _doctor(run_cli, llm_server, "gpt-4o", "--json")
    assert LONG_ID in json.loads(out)["llm"]["models"] and KEY not in out


def test_the_flags_win_over_the_environment(run_cli, llm_server, monkeypatch):
    monkeypatch.setenv("ALREF_LLM_BASE_URL", ScriptedOpenAIServer.closed_port_url())
    monkeypatch.setenv("ALREF_LLM", "elsewhere")
    code, out, _ = _doctor(run_cli, llm_server, "scripted", "--json")
    llm = json.loads(out)["llm"]
    assert code == 0 and llm["base_url"] == llm_server.base_url and llm["model_listed"] is True
    code, out, _ = run_cli("doctor", "--json", "--no-llm")
    assert json.loads(out)["llm"]["configured"] is False and "--no-llm" in json.loads(out)["llm"]["summary"]


def test_an_unreachable_server_is_said_plainly_without_the_key(run_cli, with_key):
    url = ScriptedOpenAIServer.closed_port_url()
    code, out, err = run_cli("doctor", "--llm", "m", "--llm-base-url", url)
    assert code == 0, err
    assert f"NOT reachable: ConnectError on GET {url}/models" in out and KEY not in out + err
    code, out, _ = run_cli("doctor", "--llm", "m", "--llm-base-url", url, "--json")
    llm = json.loads(out)["llm"]
    assert llm["reachable"] is False and llm["model_listed"] is None and llm["models"] is None


def test_model_flags_show_the_configured_profile_and_overrides(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    flags = ["--models", "fast", "--grounding-model", str(tmp_path / "gdino"), "--device", "cuda"]
    code, out, _ = run_cli("doctor", "--json", *flags)
    report = json.loads(out)
    assert code == 0 and report["profile"] == "fast"
    configured = [r for r in report["models"] if r["profile"] == "configured"]
    assert [(r["role"], r["available"]) for r in configured] == [("grounding", False)]
    assert configured[0]["status"].startswith("no such folder")
    assert report["device"]["configured"]  # cuda, or why not: a report, not an error
    code, out, _ = run_cli("doctor", "--models", "fast", "--grounding-model", str(tmp_path))
    assert code == 0 and "configured" in out and "local folder" in out


def test_the_manual_doctor_section_names_doctor_flags():
    text = MODELS_PAGE.read_text(encoding="utf-8")
    start = text.index("## Checking an install: `alref doctor`")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", section))
    doctor = typer.main.get_command(app).commands["doctor"]  # type: ignore[attr-defined]
    flags = {flag for p in doctor.params for flag in [*p.opts, *p.secondary_opts]}
    assert {"--llm", "--llm-base-url", "--models", "--json"} <= named <= flags
