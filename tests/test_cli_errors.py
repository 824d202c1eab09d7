"""Bad input is one line on stderr, no traceback, and a non-zero exit (2 for input, 3 for models)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import synth


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("alref: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: synth.write_text_as_video(d / "notes.mp4"), "not a video"),
        (lambda d: synth.write_truncated_video(d / "cut.mp4"), "not a video"),
        (lambda d: synth.write_truncated_video(d / "cut_fast.mp4", faststart=True), "corrupt"),
        (lambda d: synth.write_zero_frame_video(d / "empty.avi"), "frames"),
        (lambda d: synth.write_empty_folder(d / "nothing"), "no frames"),
        (lambda d: synth.write_corrupt_frames_folder(d / "corrupt"), "unreadable"),
        (lambda d: synth.write_mixed_size_folder(d / "mixed"), "size"),
    ],
    ids=[
        "missing",
        "text",
        "truncated",
        "truncated-faststart",
        "zero-frames",
        "empty-folder",
        "corrupt-jpg",
        "mixed-sizes",
    ],
)
def test_bad_video_input_exits_2(run_cli, tmp_path, make, expected):
    bad = make(tmp_path)
    code, out, err = run_cli("segment", bad, "the red square", "--models", "smoke", "--out", tmp_path / "out")
    assert code == 2
    line = _one_line(err)
    assert expected.lower() in line.lower()
    assert out == ""


def test_bad_options_exit_2(run_cli, shapes_mp4, tmp_path):
    code, _, err = run_cli("segment", shapes_mp4, "x", "--pivot", "random", "--models", "smoke")
    assert code == 2 and "pivot" in _one_line(err)
    code, _, err = run_cli("segment", shapes_mp4, "--models", "smoke")
    assert code == 2 and "reference" in _one_line(err)
    code, _, err = run_cli("segment", shapes_mp4, "x", "--models", "huge")
    assert code == 2 and "unknown model profile" in _one_line(err)
    code, _, err = run_cli("segment", shapes_mp4, "   ", "--models", "smoke")
    assert code == 2 and "non-empty" in _one_line(err)


def test_existing_outputs_survive_a_failed_run(run_cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, _ = run_cli("segment", tmp_path / "missing.mp4", "x", "--models", "smoke", "--out", out)
    assert code == 2 and (out / "keep.txt").read_text() == "mine"


def test_offline_default_models_fail_fast_naming_model_and_smoke(shapes_mp4, tmp_path):
    """The real console script: exit 3, one line naming the model, the fix, and --models smoke."""
    proc = subprocess.run(
        [sys.executable, "-m", "alref.cli", "segment", str(shapes_mp4), "the red square", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3
    line = _one_line(proc.stderr)
    assert "IDEA-Research/grounding-dino-base" in line
    assert "alref models pull" in line and "--models smoke" in line
    assert not (tmp_path / "o").exists()  # nothing decoded or written before the models were found


def test_debug_shows_traceback(shapes_mp4, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "alref.cli", "--debug", "segment", str(tmp_path / "nope.mp4"), "x"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "MediaError" in proc.stderr


def test_doctor_answers_offline(run_cli):
    code, out, _ = run_cli("doctor", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["versions"]["torch"].startswith("2.")
    assert report["device"]["auto"] in ("cpu", "cuda", "mps")
    rows = {(r["profile"], r["role"]): r for r in report["models"]}
    assert rows[("default", "grounding")]["available"] is False
    assert "alref models pull" in rows[("default", "grounding")]["status"]
    assert rows[("smoke", "segmentation")]["available"] is True
    assert report["llm"]["configured"] is False
    code, out, _ = run_cli("doctor")
    assert code == 0 and "models" in out and "LLM" in out


def test_doctor_reports_an_unreachable_llm_without_the_key(run_cli, monkeypatch):
    monkeypatch.setenv("ALREF_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: connection refused
    monkeypatch.setenv("ALREF_LLM_API_KEY", "sk-secret-value")
    code, out, _ = run_cli("doctor", "--json")
    llm = json.loads(out)["llm"]
    assert code == 0 and llm["configured"] and llm["reachable"] is False
    assert "sk-secret-value" not in out


def test_models_list_and_pull_smoke(run_cli):
    code, out, _ = run_cli("models", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["profile"] for r in rows} == {"default", "fast", "sam3", "smoke"}
    code, out, _ = run_cli("models", "pull", "smoke", "--json")
    pulled = json.loads(out)
    assert code == 0 and set(pulled) == {
        "smoke:grounding-dino",
        "smoke:sam2-video",
        "smoke:ast",
        "smoke:clap",
        "smoke:sam3",
    }
    code, _, err = run_cli("models", "pull", "IDEA-Research/grounding-dino-tiny")
    assert code == 3 and err.startswith("pulling IDEA-Research/grounding-dino-tiny")
    line = _one_line(err.split("\n", 1)[1])
    assert "could not download model 'IDEA-Research/grounding-dino-tiny'" in line
    code, _, err = run_cli("models", "pull", "bogus")
    assert code == 2 and "neither a profile" in _one_line(err)
