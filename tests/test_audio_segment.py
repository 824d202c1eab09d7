"""`alref segment VIDEO --audio` end to end with the smoke models: categories from LBRU (with an LLM
server and without an LLM), the silence gate (masks empty exactly on the silent frames), the closed
vocabulary, class-indexed palettes, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import synth
from agent_script import Script, text_of
from llm_server import Reply
from PIL import Image

pytestmark = pytest.mark.slow

SILENT = list(range(20, 35))  # 10 fps, silent from 2.0 s to 3.5 s: frame centres 2.05 … 3.45


@pytest.fixture(scope="module")
def gap_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("gap") / "gap.mp4"
    return synth.write_shapes_video(
        path, num_frames=50, width=160, height=120, fps=10, silent_from=2.0, silent_to=3.5
    )


def masks_present(out, n=50):
    return [bool(np.asarray(Image.open(out / "masks" / f"{i:05d}.png")).any()) for i in range(n)]


def flatten(ranges):
    return [f for first, last in ranges for f in range(first, last + 1)]


def lbru_answer(body_or_messages):
    """LBRU names one object from the first offered label; GPT-PS steps answer as usual."""
    messages = body_or_messages["messages"] if isinstance(body_or_messages, dict) else body_or_messages
    last = text_of(messages[-1])
    if "audio classifier listened" in last or ("could not be used" in last and '"objects"' in last):
        labels = [last.split("\n- ", 1)[1].split(" (")[0]] if "\n- " in last else []
        return json.dumps({"reasoning": "the square makes the sound", "objects": [
            {"category": "square", "labels": labels, "frame": 3}]})  # fmt: skip
    return Script()(messages)


def test_text_and_audio_gate_exactly_the_silent_frames(run_cli, gap_video, tmp_path):
    out = tmp_path / "o"
    code, _, err = run_cli("segment", gap_video, "the red square", "--audio", "--models", "smoke", "--out", out,
                           "--clip-frames", "25")  # fmt: skip
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    audio = result["audio"]
    assert [c["category"] for c in audio["categories"]] == ["the red square"]
    assert result["references"][0]["text"] == "the red square that is making sound"
    silent = [e for e in audio["events"] if e["silent"]]
    assert len(silent) == 1 and silent[0]["start_s"] == pytest.approx(2.0, abs=0.1)
    assert silent[0]["end_s"] == pytest.approx(3.5, abs=0.1)
    assert flatten(audio["removed_frames"]["1"]) == SILENT
    present = masks_present(out)
    assert [i for i, p in enumerate(present) if not p] == SILENT  # empty exactly on the silent frames
    # class-indexed palette: object 1 where its mask is, 0 elsewhere
    pal = np.asarray(Image.open(out / "palette" / "00010.png"))
    assert set(np.unique(pal)) <= {0, 1} and (pal == 1).any()


def test_keep_silent_keeps_every_mask(run_cli, gap_video, tmp_path):
    out = tmp_path / "o"
    code, _, _ = run_cli("segment", gap_video, "the red square", "--audio", "--keep-silent", "--models", "smoke",
                         "--out", out, "--clip-frames", "25", "--no-overlay")  # fmt: skip
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["audio"]["keep_silent"] and result["audio"]["removed_frames"] == {}
    assert all(masks_present(out))


def test_without_llm_the_label_table_names_the_objects(run_cli, gap_video, tmp_path):
    from alref.audio.events import label_to_object

    out = tmp_path / "o"
    code, _, err = run_cli("segment", gap_video, "--audio", "--models", "smoke", "--out", out, "--clip-frames", "25",
                           "--no-overlay")  # fmt: skip
    assert code == 0, err
    audio = json.loads((out / "result.json").read_text())["audio"]
    assert audio["lbru"]["decided_by"] == "label_table"
    expected = []
    for tag in audio["tags"]:
        name = label_to_object(tag["label"])
        if name and name not in expected:
            expected.append(name)
    assert [c["category"] for c in audio["categories"]] == expected
    assert all(label_to_object(tag["label"]) != "silence" for tag in audio["tags"])
    assert "Silence" not in [t["label"] for t in audio["tags"]]
    for category in audio["categories"]:
        assert set(SILENT) <= set(flatten(audio["removed_frames"][str(category["id"])]))
    present = masks_present(out)
    assert not any(present[f] for f in SILENT)


def test_llm_lbru_over_http_with_a_retry_and_the_hint(run_cli, gap_video, tmp_path, llm_server, monkeypatch):
    monkeypatch.setenv("ALREF_LLM_BACKOFF", "0")
    asked = {"lbru": 0}

    def answer(body):
        last = text_of(body["messages"][-1])
        if "audio classifier listened" in last:
            asked["lbru"] += 1
            return Reply("I hear a dog in frame 99.")  # not JSON: re-asked with the error
        return Reply(lbru_answer(body))

    llm_server.default = answer
    out = tmp_path / "o"
    code, _, err = run_cli("segment", gap_video, "--audio", "--models", "smoke", "--out", out, "--llm", "m",
                           "--llm-base-url", llm_server.base_url, "--clip-frames", "25", "--no-overlay", "--no-cache")  # fmt: skip
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    lbru = result["audio"]["lbru"]
    assert asked["lbru"] == 1 and lbru["decided_by"] == "llm" and lbru["attempts"] == 2
    categories = result["audio"]["categories"]
    assert [c["category"] for c in categories] == ["square"]
    assert result["references"][0]["text"] == "the square that is making sound"
    # the hint (LBRU frame 3 of the tile) reached choose_frame of the clip that holds it
    hint = categories[0]["hint_frame"]
    prompts = [text_of(m) for r in llm_server.chat_requests for m in r["messages"][-1:]]
    assert hint is not None and any("easy to see near frame" in p for p in prompts)


def test_closed_vocabulary_maps_the_answer(run_cli, gap_video, tmp_path, llm_server):
    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("background\ndog\ncar\nguitar\n")

    def answer(body):
        last = text_of(body["messages"][-1])
        if "audio classifier listened" in last:
            assert "chosen from this list: dog, car, guitar" in last
            return Reply(
                json.dumps({"reasoning": "r", "objects": [{"category": "guitar", "labels": [], "frame": 1}]})
            )
        return Reply(lbru_answer(body))

    llm_server.default = answer
    out = tmp_path / "o"
    code, _, err = run_cli("segment", gap_video, "--audio", "--categories", vocabulary, "--models", "smoke", "--out", out,
                           "--llm", "m", "--llm-base-url", llm_server.base_url, "--clip-frames", "25", "--no-overlay",
                           "--no-cache")  # fmt: skip
    assert code == 0, err
    category = json.loads((out / "result.json").read_text())["audio"]["categories"][0]
    assert category["category"] == "guitar" and category["palette_index"] == 3  # 1-based in the vocabulary
    values = set()
    for f in range(50):
        values |= set(np.unique(np.asarray(Image.open(out / "palette" / f"{f:05d}.png"))).tolist())
    assert values <= {0, 3} and 3 in values


def test_lbru_fallback_when_answers_stay_invalid(tmp_path, gap_video):
    from scripted_llm import ScriptedChatModel

    import alref
    from alref.config import load_settings
    from alref.pipeline.audio import VIDEO_TRACK, AudioRequest
    from alref.pipeline.run import segment_video

    def answer(messages):
        last = text_of(messages[-1])
        if "audio classifier listened" in last or '"objects"' in last:
            return "no idea"
        return Script()(messages)

    from alref.progress import Reporter

    said = Reporter()
    settings = load_settings(models="smoke", clip_frames=25, overlay=False, cache=False, llm_retries=1)
    result = segment_video(gap_video, [], tmp_path / "o", settings, said, chat_model=ScriptedChatModel([answer] * 200),
                           audio=AudioRequest(VIDEO_TRACK))  # fmt: skip
    lbru = result["audio"]["lbru"]
    assert lbru["decided_by"] == "fallback" and "no valid answer after 2 attempts" in lbru["fallback_reason"]
    # the terminal says so, as it does when the pivot steps fall back
    assert any("fell back to the label table: no valid answer after 2 attempts" in n for n in said.notes)
    assert alref.__version__


def test_audio_errors_exit_2(run_cli, tmp_path):
    silent = synth.write_shapes_video(tmp_path / "mute.mp4", num_frames=10, audio=False)
    code, _, err = run_cli("segment", silent, "--audio", "--models", "smoke", "--out", tmp_path / "a")
    assert code == 2 and "has no audio track" in err and "--audio PATH" in err
    code, _, err = run_cli("segment", silent, "--audio", tmp_path / "missing.wav", "--models", "smoke")
    assert code == 2 and "missing.wav" in err
    frames = synth.write_frames_folder(tmp_path / "frames", num_frames=6)
    code, _, err = run_cli("segment", frames, "--audio", "--models", "smoke")
    assert code == 2 and "no audio track" in err
    video = synth.write_shapes_video(tmp_path / "v.mp4", num_frames=10)
    code, _, err = run_cli("segment", video, "--audio", "--categories", tmp_path / "nope.txt", "--models", "smoke",
                           "--out", tmp_path / "c")  # fmt: skip
    assert code == 2 and "nope.txt" in err
    code, _, err = run_cli("segment", video, "a", "--ref", "b", "--audio", "--models", "smoke")
    assert code == 2 and "at most one text reference" in err


def test_separate_audio_file(run_cli, tmp_path):
    video = synth.write_shapes_video(tmp_path / "mute.mp4", num_frames=30, fps=10, audio=False)
    wav = synth.write_wav(tmp_path / "sound.wav", seconds=3.0, sample_rate=44100, channels=2,
                          segments=[(0.0, 1.0, "tone:440"), (1.0, 2.0, "silence"), (2.0, 3.0, "noise")])  # fmt: skip
    out = tmp_path / "o"
    code, _, err = run_cli("segment", video, "the red square", "--audio", wav, "--models", "smoke", "--out", out,
                           "--no-overlay")  # fmt: skip
    assert code == 0, err
    audio = json.loads((out / "result.json").read_text())["audio"]
    assert audio["source"].endswith("sound.wav") and audio["duration_s"] == pytest.approx(3.0, abs=0.05)
    assert flatten(audio["removed_frames"]["1"]) == list(range(10, 20))
