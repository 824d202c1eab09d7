"""What the user sees says what happened: against a local OpenAI-compatible server that cannot take images,
that goes away mid-run, or whose answers are cut at the token limit, the summary, result.json, the trace
list and the exit status say how the pivots were really decided, and count what happened."""

from __future__ import annotations

import json

import pytest
from agent_script import Script, clip_start, step_of
from llm_server import Drop, Reply, Status

pytestmark = pytest.mark.slow

TEXT_ONLY = Status(
    500, {"error": {"message": "image input is not supported - you may need to provide the mmproj"}}
)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setenv("ALREF_LLM_BACKOFF", "0")
    monkeypatch.setenv("ALREF_LLM_TRANSPORT_RETRIES", "1")


def segment(run_cli, video, out, url, *extra):
    return run_cli("segment", video, "the red square", "--models", "smoke", "--llm", "test-model", "--llm-base-url",
                   url, "--out", out, "--clip-frames", "10", "--no-overlay", "--no-cache", *extra)  # fmt: skip


def test_a_model_that_cannot_see_images_is_said_on_screen_and_in_every_record(run_cli, shapes_mp4, tmp_path,
                                                                               llm_server):  # fmt: skip
    llm_server.default = TEXT_ONLY
    out = tmp_path / "o"
    code, stdout, stderr = segment(run_cli, shapes_mp4, out, llm_server.base_url)
    assert code == 0
    assert "agent (3 of 3 clips fell back: the model cannot see images)" in stdout
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: no LLM decision was used: every clip fell back to the baseline (the model "
                        "cannot see images)"]  # fmt: skip
    result = json.loads((out / "result.json").read_text())
    assert (
        result["mode"] == "agent"
        and "3 of 3 clips fell back: the model cannot see images" in result["mode_reason"]
    )
    assert result["llm_decisions"] == {"clips": 3, "by_llm": 0, "fell_back": 3, "reason": "the model cannot see images",
                                       "reasks": 0, "fallbacks": 6}  # fmt: skip
    assert (
        result["llm"]["max_reasks"] == 2 and result["llm"]["reasks"] == 0 and "retries" not in result["llm"]
    )
    code, listed, _ = run_cli("trace", "list", tmp_path, "--json")
    assert json.loads(listed)[0]["mode"] == "agent (3 of 3 clips fell back: the model cannot see images)"


def test_strict_llm_exits_5_after_writing_everything(run_cli, shapes_mp4, tmp_path, llm_server):
    llm_server.default = TEXT_ONLY
    out = tmp_path / "o"
    code, _, stderr = segment(run_cli, shapes_mp4, out, llm_server.base_url, "--strict-llm")
    assert code == 5 and "Traceback" not in stderr
    line = [x for x in stderr.splitlines() if x.startswith("alref: error:")]
    assert line == [f"alref: error: --strict-llm: 3 of 3 clips fell back to the baseline (the model cannot see "
                    f"images); the outputs are written in {out}"]  # fmt: skip
    assert (out / "result.json").is_file() and len(list((out / "masks").glob("*.png"))) == 30


def test_a_server_that_goes_away_mid_run(run_cli, shapes_mp4, tmp_path, llm_server):
    script = Script()
    answered = {"n": 0}

    def answer(body):
        answered["n"] += 1
        return Reply(script(body["messages"])) if answered["n"] <= 6 else Drop()

    llm_server.default = answer
    out = tmp_path / "o"
    code, stdout, _ = segment(run_cli, shapes_mp4, out, llm_server.base_url, "--llm-concurrency", "1")
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    decisions = result["llm_decisions"]
    assert decisions["by_llm"] >= 1 and decisions["fell_back"] >= 1
    assert decisions["reason"] == "the LLM server could not be reached"
    assert f"{decisions['fell_back']} of 3 clips fell back: the LLM server could not be reached" in stdout
    llm = result["llm"]
    assert llm["http_calls"] == len(llm_server.chat_requests) and llm["transport_retries"] >= 1
    assert (
        llm["failed"] >= 1 and llm["asks"] == llm["http_calls"] - llm["transport_retries"] + llm["cache_hits"]
    )


def test_an_answer_cut_at_the_token_limit_is_recognised_and_asked_again_with_more(run_cli, shapes_mp4, tmp_path,
                                                                                   llm_server):  # fmt: skip
    script = Script()
    cut = {"n": 0}

    def answer(body):
        if step_of(body["messages"]) in ("choose_frame", "retry_frame") and clip_start(body["messages"]) == 0:
            cut["n"] += 1
            return Reply(
                '{"reasoning": "the square is at the left edge and then it moves and moves and',
                finish_reason="length",
            )
        return Reply(script(body["messages"]))

    llm_server.default = answer
    out = tmp_path / "o"
    code, _, _ = segment(run_cli, shapes_mp4, out, llm_server.base_url, "--llm-concurrency", "1")
    assert code == 0
    requests = llm_server.chat_requests
    frame_asks = [r for r in requests if step_of(r["messages"]) in ("choose_frame", "retry_frame")
                  and clip_start(r["messages"]) == 0]  # fmt: skip
    budgets = [r["max_completion_tokens"] for r in frame_asks]
    # doubled after each cut answer (at most 4 times the JSON budget)
    assert budgets == [512, 1024, 2048] and cut["n"] == 3
    describe = next(r for r in requests if "Describe what happens" in json.dumps(r["messages"][-1]))
    assert describe["max_completion_tokens"] == 2048  # free text keeps --llm-max-tokens
    retry_text = json.dumps(frame_asks[1]["messages"][-1])
    assert "cut at the token limit (512 tokens)" in retry_text and "short form" in retry_text
    result = json.loads((out / "result.json").read_text())
    first = result["references"][0]["clips"][0]
    assert (
        first["decided_by"] == "fallback" and "cut at the token limit (2048 tokens)" in first["fallbacks"][0]
    )
    assert result["llm"]["reasks"] == 2  # the two re-asks of clip 0's frame (3 attempts in all)
    events = [json.loads(x) for x in (out / "trace" / "events.jsonl").read_text().splitlines()]
    assert [e["cut_at_tokens"] for e in events if e.get("cut_at_tokens")] == [512, 1024, 2048]


def test_a_reference_the_grounding_model_cannot_read_is_one_line(run_cli, shapes_mp4, tmp_path):
    code, _, stderr = run_cli(
        "segment", shapes_mp4, "the red square " * 1000, "--models", "smoke", "--out", tmp_path / "o"
    )
    assert code == 2 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "too long for the grounding model" in stderr and "at most 256" in stderr
