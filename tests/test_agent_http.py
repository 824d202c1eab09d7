"""`alref segment --llm … --llm-base-url …` against a local OpenAI-compatible server that answers
well, badly, slowly or not at all: the run always finishes and result.json says what was decided
and why. Also: a run killed mid-way resumes without repeating finished clips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from agent_script import Script, clip_start
from llm_server import Drop, Malformed, Reply, ScriptedOpenAIServer, Status

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    """Retry waits are asserted in test_llm_client with an injected sleep; here they only cost time."""
    monkeypatch.setenv("ALREF_LLM_BACKOFF", "0")
    monkeypatch.setenv("ALREF_LLM_TRANSPORT_RETRIES", "2")


def serve(script: Script):
    """A server default that answers each request with the script's answer for its step."""
    return lambda body: Reply(script(body["messages"]))


def segment_args(video, out, url, *extra):
    return ["segment", video, "the red square", "--models", "smoke", "--llm", "test-model", "--llm-base-url", url,
            "--out", out, "--clip-frames", "10", "--no-overlay", "--no-cache", *extra]  # fmt: skip


def test_good_server_drives_the_decisions_over_http(run_cli, shapes_mp4, tmp_path, llm_server):
    script = Script(choose_frame=json.dumps({"reasoning": "clear view", "frame": 4}))
    llm_server.default = serve(script)
    out = tmp_path / "o"
    code, stdout, stderr = run_cli(*segment_args(shapes_mp4, out, llm_server.base_url))
    assert code == 0, stderr
    assert "mode: agent" in stderr and "test-model" in stderr
    result = json.loads((out / "result.json").read_text())
    assert result["mode"] == "agent" and result["status"] == "ok"
    for clip in result["references"][0]["clips"]:
        assert clip["decided_by"] == "llm" and clip["pivot_frame"] == clip["samples"][3]
        assert clip["frame_reasoning"] == "clear view"
    requests = llm_server.chat_requests
    llm = result["llm"]
    # every clip asks the syntax question; the client sends it once (the other two are cache hits)
    assert llm["http_calls"] == len(requests) == llm["asks"] - llm["cache_hits"] and llm["cache_hits"] == 2
    first = requests[0]
    assert first["model"] == "test-model" and first["temperature"] == 0
    images = [p for r in requests for m in r["messages"] if isinstance(m["content"], list) for p in m["content"]
              if p.get("type") == "image_url"]  # fmt: skip
    assert images and all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)
    structured = [r for r in requests if "response_format" in r]
    assert structured and structured[0]["response_format"]["type"] == "json_schema"
    # the trace shows every call
    calls = [json.loads(line) for line in (out / "trace" / "events.jsonl").read_text().splitlines()]
    asked = [e for e in calls if e["kind"] == "llm_call"]
    assert len(asked) == llm["asks"] and sum(not e["cache_hit"] for e in asked) == len(requests)


def test_bad_slow_and_rate_limited_answers_still_finish(
    run_cli, shapes_mp4, tmp_path, llm_server, monkeypatch
):
    """Each clip meets a different failure; all recover or fall back, and result.json says which."""
    script = Script()
    failures = {0: [Malformed()], 10: [Status(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})],
                20: [Status(500, "boom"), Drop()]}  # fmt: skip
    lock = threading.Lock()

    def answer(body):
        start = clip_start(body["messages"])
        with lock:
            queue = failures.get(start)
            if queue and "choose the single frame" in json.dumps(body["messages"][-1]):
                return queue.pop(0)
        return Reply(script(body["messages"]))

    llm_server.default = answer
    out = tmp_path / "o"
    code, _, stderr = run_cli(*segment_args(shapes_mp4, out, llm_server.base_url, "--llm-timeout", "5"))
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok"
    assert all(c["decided_by"] == "llm" for c in result["references"][0]["clips"])
    events = [json.loads(line) for line in (out / "trace" / "events.jsonl").read_text().splitlines()]
    retries = [e for e in events if e["kind"] == "llm_retry"]
    assert {e["error_kind"] for e in retries} >= {"rate_limit", "server_error"}


def test_slow_server_times_out_and_falls_back(run_cli, shapes_mp4, tmp_path, llm_server):
    llm_server.default = Reply("too late", delay=3.0)
    out = tmp_path / "o"
    code, _, stderr = run_cli(*segment_args(shapes_mp4, out, llm_server.base_url, "--llm-timeout", "0.5"),
                              "--clip-frames", "30")  # fmt: skip
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    clip = result["references"][0]["clips"][0]
    assert clip["decided_by"] == "fallback" and clip["valid"]
    assert any("LLM unavailable" in f and "did not answer within 0.5 s" in f for f in clip["fallbacks"])


def test_dead_server_falls_back_to_the_baseline(run_cli, shapes_mp4, tmp_path):
    out = tmp_path / "o"
    url = ScriptedOpenAIServer.closed_port_url()
    code, _, stderr = run_cli(*segment_args(shapes_mp4, out, url))
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and result["mode"] == "agent"
    for clip in result["references"][0]["clips"]:
        assert clip["decided_by"] == "fallback" and clip["valid"]
        assert any("LLM unavailable" in f for f in clip["fallbacks"])


def test_text_only_model_is_named_and_not_retried(run_cli, shapes_mp4, tmp_path, llm_server):
    llm_server.default = Status(
        500,
        {
            "error": {
                "message": "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj"
            }
        },
    )
    out = tmp_path / "o"
    code, _, _ = run_cli(*segment_args(shapes_mp4, out, llm_server.base_url, "--clip-frames", "30"))
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    clip = result["references"][0]["clips"][0]
    assert any("cannot see images" in f for f in clip["fallbacks"])
    image_requests = [r for r in llm_server.chat_requests if "image_url" in json.dumps(r)]
    assert len(image_requests) == 1  # recognised at once: no retries, no further image requests


def test_trace_show_prints_the_tree(run_cli, shapes_mp4, tmp_path, llm_server):
    script = Script(
        choose_box=lambda s, a: "box 42" if a == 1 else json.dumps({"reasoning": "whole square", "box": 1})
    )
    llm_server.default = serve(script)
    out = tmp_path / "o"
    assert run_cli(*segment_args(shapes_mp4, out, llm_server.base_url))[0] == 0
    code, stdout, _ = run_cli("trace", "show", out)
    assert code == 0
    assert "reference 1" in stdout and "clip 0" in stdout and "clip 2" in stdout
    assert "choose_box attempt 2" in stdout and "box 42 does not exist" in stdout
    assert "decision" in stdout and "timings" in stdout
    code, stdout, _ = run_cli("trace", "show", out, "--json")
    assert code == 0 and any(e["kind"] == "llm_call" for e in json.loads(stdout))
    code, _, stderr = run_cli("trace", "show", tmp_path / "nothing")
    assert code == 2 and "no trace" in stderr


def test_killed_run_resumes_without_repeating_finished_clips(shapes_mp4, tmp_path):
    """SIGKILL the CLI while clip 2 is being reasoned about; the rerun asks nothing for clips 0 and 1."""
    script = Script()
    seen_clip_2 = threading.Event()

    def answer(body):
        start = clip_start(body["messages"])
        if start == 20:
            seen_clip_2.set()
            return Reply(script(body["messages"]), delay=30)  # hangs until the process is killed
        return Reply(script(body["messages"]))

    out = tmp_path / "o"
    with ScriptedOpenAIServer(answer) as server:
        args = [sys.executable, "-m", "alref.cli", *map(str, segment_args(shapes_mp4, out, server.base_url,
                "--llm-concurrency", "1"))]  # fmt: skip
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()
        )
        try:
            # with --llm-concurrency 1 the branches of clips 0 and 1 were checkpointed (durability
            # "sync") before clip 2 started asking
            assert seen_clip_2.wait(timeout=120), (
                proc.stderr.read().decode() if proc.poll() is not None else ""
            )
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert not (out / "result.json").exists()
        first_run = list(server.chat_requests)

        server.default = serve(Script())
        server.requests.clear()
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        again = [clip_start(r["messages"]) for r in server.chat_requests]
    assert {clip_start(r["messages"]) for r in first_run} >= {0, 10, 20}
    assert set(again) - {None} == {20}  # only the unfinished clip is asked again (None: syntax analysis)
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and len(result["references"][0]["clips"]) == 3
    events = [json.loads(line) for line in (out / "trace" / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "resume" for e in events)
