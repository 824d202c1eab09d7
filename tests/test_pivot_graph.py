"""The pivot-selection graph as a pure decision step, with a fake context: no SAM 2, no detector, no
HTTP — sampled frames as JPEGs in a workspace, made-up detections, a scripted LLM. Its output is its
state (one decision per reference and clip); it resumes through the checkpointer alone; progress comes
from the stream; and it never imports or calls the pipeline."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from agent_script import Script, clip_start
from langgraph.checkpoint.sqlite import SqliteSaver
from scripted_llm import ScriptedChatModel

from alref.agent.context import AgentContext
from alref.agent.graph import build_graph
from alref.agent.llm import LLMClient
from alref.agent.select import select_pivots
from alref.config import Settings
from alref.core.records import Detection, Reference
from alref.core.workspace import Workspace
from alref.media.sampling import make_clips
from alref.media.writers import save_samples

CLIPS = make_clips(30, 10, 5)
SAMPLED = sorted({f for c in CLIPS for f in c["samples"]})
REFS = [Reference(id=1, text="the red square"), Reference(id=2, text="the blue circle")]


def detections() -> dict[int, dict[int, list[Detection]]]:
    """Two boxes on every sampled frame; the second scores higher on odd frames."""
    per = {}
    for f in SAMPLED:
        a, b = 0.6 + f / 100, 0.5 + (f % 2) * 0.3
        per[f] = sorted([Detection((1, 1, 20, 20), a, "square"), Detection((30, 30, 60, 60), b, "circle")],
                        key=lambda d: -d.score)  # fmt: skip
    return {1: per, 2: {f: list(d) for f, d in per.items()}}


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "run")
    rng = np.random.default_rng(0)
    save_samples({f: rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for f in SAMPLED}, ws.sample)
    return ws


def context(workspace, model, **settings) -> AgentContext:
    s = Settings(cache=False, clip_frames=10, **settings)
    return AgentContext(settings=s, llm=LLMClient(s, chat_model=model), workspace=workspace)


def test_the_graph_decides_and_nothing_else():
    nodes = set(build_graph().get_graph(xray=True).nodes)
    assert not any("propagate" in n for n in nodes)
    assert {"clip", "decide_references"} <= {n.split(":")[0] for n in nodes}


def test_decisions_per_reference_and_clip_come_out_of_the_state(workspace):
    script = Script(choose_box=json.dumps({"reasoning": "the second", "box": 2}))
    ctx = context(workspace, script.model())
    done = []
    results = select_pivots(REFS, CLIPS, detections(), ctx.settings, ctx, on_clip=lambda: done.append(1))
    assert len(done) == len(REFS) * len(CLIPS)  # progress from graph.stream, one tick per clip
    assert [r["id"] for r in results] == [1, 2] and all(r["not_found"] is None for r in results)
    for ref in results:
        assert [d["clip"] for d in ref["clips"]] == [0, 1, 2]
        for d in ref["clips"]:
            frame = d["samples"][1]  # the scripted choose_frame answers "frame 2"
            second = detections()[ref["id"]][frame][1]
            assert d["pivot_frame"] == frame and d["decided_by"] == "llm" and d["box_number"] == 2
            assert d["pivot_box"] == [round(v, 2) for v in second.box] and d["ref_id"] == ref["id"]
            json.dumps(d)  # a plain record: state, checkpoints and result.json hold it as it is
    assert script.steps["syntax_analysis"] == 2  # one per reference, shared by its three clips
    usage = ctx.llm.usage()
    assert usage["asks"] == usage["http_calls"] + usage["cache_hits"] and usage["cache_hits"] == 4


def test_none_in_every_clip_is_not_found_or_the_baseline(workspace):
    none = json.dumps({"reasoning": "no box is the square", "box": None})
    ctx = context(workspace, Script(choose_box=none).model())
    results = select_pivots(REFS[:1], CLIPS, detections(), ctx.settings, ctx)
    assert results[0]["not_found"].startswith("the LLM said no candidate box holds the referent")
    assert not any(d["valid"] for d in results[0]["clips"])
    ctx = context(workspace, Script(choose_box=none).model(), not_found="baseline")
    results = select_pivots(REFS[:1], CLIPS, detections(), ctx.settings, ctx)
    assert results[0]["not_found"] is None
    assert all(d["valid"] and d["decided_by"] == "baseline" for d in results[0]["clips"])


def test_without_an_llm_the_baseline_decides_in_the_same_records():
    results = select_pivots(REFS, CLIPS, detections(), Settings(), None)
    d = results[0]["clips"][0]
    best = max(CLIPS[0]["samples"], key=lambda f: detections()[1][f][0].score)
    assert (
        d["decided_by"] == "baseline" and d["pivot_frame"] == best and set(d) >= {"ref_id", "clip", "reason"}
    )


class Crash(Exception):
    """Not an LLM failure: the process 'dies' in the middle of the selection."""


def test_an_interrupted_selection_resumes_through_the_checkpointer_alone(workspace, tmp_path):
    script = Script()
    calls = {"n": 0}

    def flaky(messages):
        calls["n"] += 1
        if calls["n"] == 12:
            raise Crash("killed")
        return script(messages)

    conn = sqlite3.connect(str(tmp_path / "pivots.sqlite"), check_same_thread=False)
    saver = SqliteSaver(conn)
    ctx = context(workspace, ScriptedChatModel([flaky] * 200), llm_concurrency=1)
    with pytest.raises(Crash):
        select_pivots(REFS, CLIPS, detections(), ctx.settings, ctx, checkpointer=saver, thread_id="t")
    finished = script.steps["choose_box"]  # a branch's last LLM call; nothing after it can crash
    assert 1 <= finished < 6
    second = Script()
    ctx = context(workspace, second.model(), llm_concurrency=1)
    done = []
    results = select_pivots(REFS, CLIPS, detections(), ctx.settings, ctx, checkpointer=saver, thread_id="t",
                            on_clip=lambda: done.append(1))  # fmt: skip
    assert all(len(r["clips"]) == 3 for r in results) and len(done) == 6
    # finished branches are not asked again, and the crashed one goes on from its last finished step: no
    # question is repeated but the (client-wide, once) syntax question that the new client asks again
    assert second.steps["choose_box"] == 6 - finished and second.steps["describe_event"] <= 6 - finished
    whole = Script()
    ctx = context(workspace, whole.model(), llm_concurrency=1)
    select_pivots(REFS, CLIPS, detections(), ctx.settings, ctx)
    asked = sum(script.steps.values()) + sum(second.steps.values())
    assert sum(whole.steps.values()) <= asked <= sum(whole.steps.values()) + 2
    third = Script()
    ctx = context(workspace, third.model())
    again = select_pivots(REFS, CLIPS, detections(), ctx.settings, ctx, checkpointer=saver, thread_id="t")
    assert again == results and sum(third.steps.values()) == 0  # a finished thread is read, not rerun
    conn.close()


# --- inputs that arrive while the graph runs (alref.agent.feed) ---------------------------------------


def _fed_context(tmp_path, model, **settings):
    """A context whose workspace has no sampled frame yet and whose feed has nothing: the producer
    (this test) adds them while the graph runs."""
    from dataclasses import replace

    from alref.agent.feed import InputFeed

    ctx = context(Workspace(tmp_path / "fed"), model, **settings)
    return replace(ctx, feed=InputFeed())


def _produce(ctx, workspace_from, order, boxes=True):
    """Add the sampled frames and (``boxes``) detections clip by clip, in ``order`` of clips."""
    found = detections()
    for clip in order:
        frames = CLIPS[clip]["samples"]
        for f in frames:
            ctx.workspace.sample(f).parent.mkdir(parents=True, exist_ok=True)
            ctx.workspace.sample(f).write_bytes(workspace_from.sample(f).read_bytes())
        ctx.feed.add_samples(frames)
        for ref_id, per in found.items() if boxes else ():
            ctx.feed.add_detections(ref_id, {f: per[f] for f in frames})


def test_a_graph_fed_while_it_runs_decides_as_with_its_input(workspace, tmp_path):
    """No detections in the input: each branch waits for its own clip's frames and boxes from the
    feed, and the decisions are those of the graph given everything at the start."""
    import threading

    given = Script(choose_box=json.dumps({"reasoning": "the second", "box": 2}))
    ctx = context(workspace, given.model())
    expected = select_pivots(REFS, CLIPS, detections(), ctx.settings, ctx)

    first_clip_asked = threading.Event()

    def script(messages):
        if clip_start(messages) == 0:
            first_clip_asked.set()
        return fed_script(messages)

    fed_script = Script(choose_box=json.dumps({"reasoning": "the second", "box": 2}))
    fed = _fed_context(tmp_path, ScriptedChatModel([script] * 200))
    out = {}
    selecting = threading.Thread(
        target=lambda: out.update(r=select_pivots(REFS, CLIPS, None, fed.settings, fed))
    )
    selecting.start()
    _produce(fed, workspace, [0])
    assert first_clip_asked.wait(60)  # the first clip is reasoned about before the others have arrived
    _produce(fed, workspace, [1, 2])
    selecting.join(60)
    assert out["r"] == expected


def test_a_feed_closed_early_ends_the_graph_with_its_reason(tmp_path):
    from alref.agent.feed import FeedClosed

    ctx = _fed_context(tmp_path, Script().model())
    ctx.feed.close(OSError("the disk is full"))
    with pytest.raises(FeedClosed, match="OSError: the disk is full"):
        select_pivots(REFS, CLIPS, None, ctx.settings, ctx)


def test_without_detections_the_agent_needs_a_feed(workspace):
    ctx = context(workspace, Script().model())
    with pytest.raises(ValueError, match="needs ctx.feed"):
        select_pivots(REFS, CLIPS, None, ctx.settings, ctx)
    with pytest.raises(ValueError, match="needs ctx.feed"):
        select_pivots(REFS, CLIPS, None, ctx.settings, None)


def test_once_the_producer_fails_no_node_starts_and_nothing_more_is_asked(workspace, tmp_path):
    """The feed is closed with the producer's error during the first LLM call: the nodes already
    running finish their call, no later node (choose_frame, …) starts, and the graph ends."""
    from alref.agent.feed import FeedClosed

    script = Script()

    def answer(messages):
        fed.feed.close(OSError("the detector crashed"))
        return script(messages)

    fed = _fed_context(tmp_path, ScriptedChatModel([answer] * 200))
    _produce(fed, workspace, [0, 1, 2], boxes=False)  # the frames are there, the boxes never come
    with pytest.raises(FeedClosed, match="OSError: the detector crashed"):
        select_pivots(REFS, CLIPS, None, fed.settings, fed)
    assert set(script.steps) <= {"describe_event", "syntax_analysis"}


def test_a_feed_ended_without_an_error_lets_nodes_run_and_says_what_never_came():
    from alref.agent.feed import FeedClosed, InputFeed

    feed = InputFeed()
    feed.add_samples([0, 2])
    feed.add_detections(1, {0: detections()[1][0]})
    feed.close()
    feed.check()  # a producer that ended well stops no node
    feed.wait_samples([0, 2])
    assert feed.detections(1, [0]) == {"0": [dict(box=list(d.box), score=d.score, phrase=d.phrase)
                                             for d in detections()[1][0]]}  # fmt: skip
    with pytest.raises(FeedClosed, match=r"sampled frames \[4\] never arrived \(the input ended\)"):
        feed.wait_samples([2, 4])
    with pytest.raises(FeedClosed, match="the detections of reference 2 never arrived"):
        feed.detections(2, [0])
