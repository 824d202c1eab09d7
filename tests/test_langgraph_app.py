"""alref's own graphs (langgraph.json: ``segment`` and ``chat``) in LangGraph's real server
(``langgraph dev`` on 127.0.0.1), driven by the langgraph-sdk client: a ``segment`` run writes the same
masks and result.json as `alref segment`; a ``chat`` thread answers through the scripted
OpenAI-compatible server and keeps its objects across runs; bad input fails one run with one line and
the server keeps serving."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import synth
from llm_server import segment_then_list

sys.path.insert(0, str(Path(__file__).parent))

from langgraph_server import LangGraphDevServer, skip_without_langgraph_cli  # noqa: E402

import alref  # noqa: E402

skip_without_langgraph_cli()

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
W, H, N = 160, 120, 20
SMOKE = {"models": "smoke", "clip_frames": 10, "overlay": False}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return synth.write_shapes_video(
        tmp_path_factory.mktemp("lgvideo") / "v.mp4", num_frames=N, width=W, height=H
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with LangGraphDevServer(ROOT / "langgraph.json", workdir=tmp_path_factory.mktemp("langgraph-dev")) as srv:
        yield srv.client(timeout=300)


def test_the_server_lists_alrefs_graphs(client):
    graphs = {a["graph_id"] for a in client.assistants.search()}
    assert {"segment", "chat"} <= graphs


def test_segment_run_writes_what_alref_segment_writes(client, video, tmp_path):
    out = tmp_path / "served"
    state = client.runs.wait(
        None, "segment", input={"video": str(video), "references": ["the red square"], "out": str(out)},
        context=SMOKE,
    )  # fmt: skip
    assert state["status"] == "ok" and state["mode"] == "baseline" and state["out"] == str(out)
    assert state["references"][0]["frames_with_mask"] > 0
    assert len(list((out / "masks").glob("*.png"))) == N
    direct = alref.segment(video, "the red square", out=tmp_path / "direct", **SMOKE)
    served = json.loads((out / "result.json").read_text())
    assert served["references"] == direct.data["references"] and served["run_key"] == direct.data["run_key"]
    assert (out / "masks.json").read_text() == (tmp_path / "direct" / "masks.json").read_text()


@pytest.mark.parametrize(
    ("payload", "context", "message"),
    [
        ({"video": "/nowhere/missing.mp4", "references": ["x"]}, SMOKE, "missing.mp4"),
        ({"video": "VIDEO", "references": ["  "]}, SMOKE, "non-empty sentence"),
        ({"video": "VIDEO", "references": []}, SMOKE, 'needs "references"'),
        ({"video": "VIDEO", "references": ["x"]}, {**SMOKE, "clip_frame": 3}, "unknown setting(s) in the run's context: clip_frame"),
        ({"video": "VIDEO", "references": ["x"]}, {**SMOKE, "llm_api_key": "sk-x"}, "server's environment"),
    ],
)  # fmt: skip
def test_bad_input_fails_the_run_with_one_line_and_the_server_keeps_serving(client, video, tmp_path, payload,
                                                                             context, message):  # fmt: skip
    payload = {k: (str(video) if v == "VIDEO" else v) for k, v in payload.items()} | {
        "out": str(tmp_path / "o")
    }
    with pytest.raises(Exception) as failed:
        client.runs.wait(None, "segment", input=payload, context=context)
    text = str(failed.value)
    assert message in text and "\n" not in text and "internal error" not in text
    assert "sk-x" not in text
    assert {a["graph_id"] for a in client.assistants.search()} >= {"segment"}  # still serving


def chat_context(video, tmp_path, llm_server) -> tuple[list[float], dict]:
    """The red square's box on frame 0, and a chat run's context; the scripted LLM segments it, then lists."""
    red = list(map(float, synth.red_square_box(0, N, W, H)))
    llm_server.default = segment_then_list(red)
    return red, {**SMOKE, "llm": "m", "llm_base_url": llm_server.base_url, "video": str(video),
                 "out": str(tmp_path / "c")}  # fmt: skip


def test_chat_thread_answers_and_keeps_its_objects_across_runs(client, video, tmp_path, llm_server):
    red, context = chat_context(video, tmp_path, llm_server)
    thread = client.threads.create()["thread_id"]
    first = client.runs.wait(thread, "chat", input={"messages": [{"role": "user", "content": "segment the red square"}]},
                             context=context)  # fmt: skip
    assert first["messages"][-1]["content"] == "Done."
    objects = first["objects"]["objects"]
    assert objects["1"]["name"] == "red square" and objects["1"]["prompts"] == [[0, red]]
    second = client.runs.wait(thread, "chat", input={"messages": [{"role": "user", "content": "what is there?"}]},
                              context=context)  # fmt: skip
    tool_results = [m for m in second["messages"] if m["type"] == "tool"]
    listed = json.loads(tool_results[-1]["content"])
    assert listed[0]["name"] == "red square" and listed[0]["frames_with_mask"] > 0
    assert sum(m["type"] == "human" for m in second["messages"]) == 2  # one conversation
    history = [m["role"] for m in llm_server.chat_requests[-1]["messages"]]
    assert history.count("user") >= 2
    state = client.threads.get_state(thread)["values"]
    assert state["objects"]["objects"]["1"]["name"] == "red square"
    events = (tmp_path / "c" / "trace" / "events.jsonl").read_text()
    assert '"llm_call"' in events and "sk-" not in events


def test_segment_streams_its_progress(client, video, tmp_path):
    events = [
        chunk.data
        for chunk in client.runs.stream(
            None,
            "segment",
            input={"video": str(video), "references": ["the blue circle"], "out": str(tmp_path / "s")},
            context=SMOKE,
            stream_mode="custom",
        )  # fmt: skip
        if chunk.event == "custom"
    ]
    stages = {e["stage"]: e for e in events if "stage" in e}
    assert stages["propagation"]["done"] == stages["propagation"]["total"] == N
    assert any("mode: baseline" in e.get("note", "") for e in events)


def test_segment_asks_with_an_interrupt_and_resumes_by_number_and_by_text(
    client, video, tmp_path, llm_server
):
    """Several boxes fit equally: the served run stops with LangGraph's interrupt (what Studio and the SDK
    show); Command(resume=…) answers it — a number, then words that go back to the LLM."""
    from agent_script import Script
    from llm_server import Reply

    ambiguous = json.dumps({"reasoning": "boxes 1 and 2 both hold a square", "box": 1, "ambiguous": [2]})
    answers = iter([ambiguous, ambiguous])  # each clip once; after the person's words, a clear answer
    script = Script(
        choose_box=lambda start, attempt: next(answers, json.dumps({"reasoning": "left", "box": 3}))
    )
    llm_server.default = lambda body: Reply(script(body["messages"]))
    context = {**SMOKE, "llm": "m", "llm_base_url": llm_server.base_url, "cache": False, "verify": False}
    out = tmp_path / "asked"
    thread = client.threads.create()["thread_id"]
    first = client.runs.wait(thread, "segment", input={"video": str(video), "references": ["the red square"],
                                                        "out": str(out)}, context=context)  # fmt: skip
    (pending,) = first["__interrupt__"]
    question = pending["value"]
    assert question["kind"] == "ambiguous_box" and "Which do you mean?" in question["question"]
    assert question["options"][1]["label"] == "box 2 (green)" and question["image"].endswith(".jpg")
    state = client.threads.get_state(thread)
    assert state["tasks"][0]["interrupts"][0]["value"]["clip"] == question["clip"]
    second = client.runs.wait(thread, "segment", command={"resume": 2}, context=context)
    (pending,) = second["__interrupt__"]
    assert pending["value"]["clip"] != question["clip"]  # the other clip's question
    done = client.runs.wait(thread, "segment", command={"resume": "the one on the left"}, context=context)
    assert "__interrupt__" not in done and done["status"] == "ok"
    clips = {c["clip"]: c for c in json.loads((out / "result.json").read_text())["references"][0]["clips"]}
    assert (
        clips[question["clip"]]["box_number"] == 2 and clips[question["clip"]]["ambiguity"]["answer"] == "2"
    )
    assert clips[pending["value"]["clip"]]["box_number"] == 3  # the LLM, told the person's words
    assert script.steps["choose_box"] == 3


def test_chat_streams_its_steps(client, video, tmp_path, llm_server):
    red, context = chat_context(video, tmp_path, llm_server)
    thread = client.threads.create()["thread_id"]
    events = [chunk.data for chunk in client.runs.stream(
        thread, "chat", input={"messages": [{"role": "user", "content": "segment the red square"}]}, context=context,
        stream_mode="custom") if chunk.event == "custom"]  # fmt: skip
    steps = [e["step"] for e in events]
    assert steps == ["tool_call", "tool_result", "answer"]
    assert events[0]["tool"] == "segment_box" and events[0]["args"]["name"] == "red square"
    assert not events[1]["error"] and events[2]["text"] == "Done."
