"""Ask when ambiguous: when the LLM says several boxes fit the sentence equally, an interactive caller
gets a question (LangGraph ``interrupt()``) and the answer resumes the graph from its checkpoint; a
non-interactive run decides by ``--ambiguous`` and records it. Reading answers: numbers, "none",
words (sent back to the LLM), and numbers that name no candidate (asked again)."""

from __future__ import annotations

import io
import json

import pytest
import synth
from agent_script import Script
from llm_server import Reply
from test_tracks_pipeline import shapes  # noqa: F401, F811 - the fixture

import alref
from alref.agent.questions import Choice, QuestionPending, read_answer
from alref.config import load_settings
from alref.pipeline.run import segment_video

N, W, H = 20, 160, 120
ASKING = load_settings(models="smoke", clip_frames=10, overlay=False, cache=False, verify=False, ask=True)
AMBIGUOUS = json.dumps({"reasoning": "boxes 1 and 2 both hold a square", "box": 1, "ambiguous": [2]})


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ask")
    return synth.write_shapes_video(folder / "v.mp4", num_frames=N, width=W, height=H, fps=10)


def segment(video, out, script, **settings):
    return alref.segment(video, "the red square", out=out, models="smoke", chat_model=script.model(),
                         clip_frames=10, overlay=False, cache=False, verify=False, **settings)  # fmt: skip


def test_answers_are_read_as_numbers_none_or_words():
    assert read_answer(2, [1, 2]) == Choice(numbers=(2,))
    assert read_answer("box 1 and 3", [1, 2, 3]) == Choice(numbers=(1, 3))
    assert read_answer([3, 1], [1, 2, 3]) == Choice(numbers=(3, 1))
    assert read_answer("None.", [1]) == Choice(none=True)
    assert read_answer("the one on the left", [1, 2]) == Choice(text="the one on the left")
    with pytest.raises(ValueError, match="9 is not one of the candidates"):
        read_answer("9", [1, 2])
    with pytest.raises(ValueError, match="empty"):
        read_answer("  ", [1, 2])


@pytest.mark.parametrize("policy", ["best", "all", "not-found"])
def test_without_a_person_the_policy_decides_and_is_recorded(video, tmp_path, policy):
    result = segment(video, tmp_path / policy, Script(choose_box=AMBIGUOUS), ambiguous=policy)
    ref = result.references[0]
    for clip in ref["clips"]:
        assert clip["ambiguity"]["numbers"] == [1, 2] and not clip["ambiguity"]["asked"]
        assert clip["ambiguity"]["policy"] == policy and f"--ambiguous {policy}" in clip["reason"]
    if policy == "best":
        assert ref["status"] == "ok" and all(
            c["box_number"] == 1 and "extra_boxes" not in c for c in ref["clips"]
        )
    elif policy == "all":
        assert ref["status"] == "ok"
        assert all(c["extra_boxes"] == [c["candidates"][1]["box"]] for c in ref["clips"])
        best = segment(video, tmp_path / "b", Script(choose_box=AMBIGUOUS))
        both, one = result.masks(1), best.masks(1)
        assert (both | one).sum() == both.sum()  # every pixel of the LLM's pick, and those of box 2
    else:
        assert ref["status"] == "not_found" and "fits several candidates equally" in ref["reason"]
        assert not result.masks(1).any()
    events = [json.loads(x) for x in (tmp_path / policy / "trace" / "events.jsonl").read_text().splitlines()]
    assert sum(e["kind"] == "ambiguous" for e in events) == len(ref["clips"])


def test_a_person_is_asked_and_the_answer_resumes_from_the_checkpoint(video, tmp_path):
    script = Script(choose_box=AMBIGUOUS)
    out = tmp_path / "o"
    with pytest.raises(QuestionPending) as stopped:
        segment(video, out, script, ask=True)
    pending = stopped.value.pending
    assert len(pending) == 2  # one question per clip, both clips asked at once
    question = pending[0].question
    assert question["kind"] == "ambiguous_box" and "1 (red), 2 (green)" in question["question"]
    assert [o["number"] for o in question["options"]] == list(range(1, len(question["options"]) + 1))
    assert question["image"] and (out / "work" / "agent" / "boxes").is_dir()
    asked = dict(script.steps)
    # hours later: the answers resume the graph; nothing that was finished is asked again
    answers = {pending[0].id: "2", pending[1].id: "none"}
    data = segment_video(video, ["the red square"], out, ASKING, chat_model=script.model(), answers=answers)
    assert dict(script.steps) == asked  # no LLM question was asked again
    by_clip = {c["clip"]: c for c in data["references"][0]["clips"]}
    first, second = (by_clip[pending[i].question["clip"]] for i in (0, 1))
    assert first["valid"] and first["box_number"] == 2 and first["ambiguity"]["asked"]
    assert first["decided_by"] == "person"
    assert first["ambiguity"]["answer"] == "2" and "the person chose box 2" in first["reason"]
    assert not second["valid"] and second["ambiguity"]["decided"].startswith("the person chose none")


def test_words_go_back_to_the_llm_and_a_bad_number_is_asked_again(video, tmp_path):
    answers = iter([AMBIGUOUS, AMBIGUOUS])  # both clips ambiguous; after the person's words, a clear answer
    script = Script(
        choose_box=lambda start, attempt: next(answers, json.dumps({"reasoning": "the left one", "box": 2}))
    )
    out = tmp_path / "o"
    given: dict = {}
    rounds = 0
    while True:
        try:
            data = segment_video(
                video, ["the red square"], out, ASKING, chat_model=script.model(), answers=given
            )
            break
        except QuestionPending as stopped:
            rounds += 1
            for item in stopped.pending:
                if item.question.get("error"):
                    assert "99 is not one of the candidates" in item.question["error"]
                    given[item.id] = "1"
                elif item.question["clip"] == 0:
                    given[item.id] = "the one on the left"
                else:
                    given[item.id] = "99"
    clips = data["references"][0]["clips"]
    assert clips[0]["box_number"] == 2 and "the left one" in clips[0]["box_reasoning"]
    said = [m for (step, start, msgs) in script.requests if step == "choose_box" for m in msgs[-1:]]
    assert any("the one on the left" in str(getattr(m, "content", m)) for m in said)
    assert clips[1]["box_number"] == 1 and clips[1]["ambiguity"]["answer"] == "1"
    assert rounds == 2  # the bad number was asked again, with the reason


def test_segment_ask_reads_the_terminal_and_an_unanswered_question_exits_6(run_cli, video, tmp_path, llm_server,
                                                                           monkeypatch):  # fmt: skip
    script = Script(choose_box=AMBIGUOUS)
    llm_server.default = lambda body: Reply(script(body["messages"]))
    monkeypatch.setenv("ALREF_LLM_BACKOFF", "0")
    out = tmp_path / "o"
    args = ("segment", str(video), "the red square", "--models", "smoke", "--llm", "m", "--llm-base-url",
            llm_server.base_url, "--out", str(out), "--clip-frames", "10", "--no-overlay", "--no-verify", "--ask")  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, stderr = run_cli(*args)
    assert code == 6 and "run the same command again to answer" in stderr and "question" in stderr
    sent = len(llm_server.chat_requests)
    monkeypatch.setattr("sys.stdin", io.StringIO("2\n1\n"))
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stderr
    assert len(llm_server.chat_requests) == sent  # resumed from the checkpoint: nothing asked again
    result = json.loads((out / "result.json").read_text())
    assert sorted(c["box_number"] for c in result["references"][0]["clips"]) == [1, 2]
    code, helptext, _ = run_cli("segment", "--help")
    assert "--ask" in helptext and "--ambiguous" in helptext


def test_verification_unsure_asks_and_no_takes_the_next_candidate(video, tmp_path):
    import verify_script

    script = Script(verify_masks=lambda m: verify_script.verdicts(m, o1="unsure"))
    settings = ASKING.model_copy(update={"verify": True})
    out = tmp_path / "o"
    with pytest.raises(QuestionPending) as stopped:
        segment_video(video, ["the red square"], out, settings, chat_model=script.model())
    (item,) = stopped.value.pending
    assert item.question["kind"] == "verify_unsure" and "Is it?" in item.question["question"]
    data = segment_video(
        video, ["the red square"], out, settings, chat_model=script.model(), answers={item.id: "no"}
    )
    (round1,) = data["verification"]["rounds"]
    assert (
        round1["verdicts"][0]["verdict"] == "wrong_object" and round1["verdicts"][0]["decided_by"] == "person"
    )
    assert round1["changes"][0]["action"] == "next_candidate" and data["verification"]["repropagated"] == [1]
    assert script.steps["verify_masks"] == 1  # the resumed graph did not ask the LLM again


def test_tracks_candidates_left_uncertain_are_asked_or_decided_by_the_policy(tmp_path, shapes):  # noqa: F811 - the imported fixture
    """``shapes``: the shapes video, tracked by the stand-in concept tracker (test_tracks_pipeline)."""
    from test_tracks_graph import Judge

    concept = json.dumps({"reasoning": "shapes", "concept": "shape", "alternatives": []})
    settings = load_settings(strategy="tracks", clip_frames=10, overlay=False, cache=False, verify=False,
                             track_rounds=1)  # fmt: skip

    def run(out, answers=None, **update):
        judge = Judge({1: "uncertain", 2: "uncertain"}, concept=concept)
        model = __import__("scripted_llm").ScriptedChatModel([judge] * 40)
        return segment_video(shapes, ["the shape"], out, settings.model_copy(update=update), chat_model=model,
                             answers=answers)  # fmt: skip

    every = run(tmp_path / "all", ambiguous="all")["references"][0]
    assert every["accepted"] == [1, 2] and every["decided_by"] == "fallback"
    assert every["ambiguity"]["policy"] == "all" and "stayed uncertain" in every["reason"]
    best = run(tmp_path / "best")["references"][0]
    assert best["accepted"] == [1] and "--ambiguous best" in best["reason"]
    with pytest.raises(QuestionPending) as stopped:
        run(tmp_path / "ask", ask=True)
    (item,) = stopped.value.pending
    assert item.question["kind"] == "ambiguous_tracks" and [
        o["number"] for o in item.question["options"]
    ] == [1, 2]
    asked = run(tmp_path / "ask", answers={item.id: "2"}, ask=True)["references"][0]
    assert (
        asked["accepted"] == [2] and asked["decided_by"] == "person" and asked["ambiguity"]["answer"] == "2"
    )


def test_the_chat_asks_and_the_next_message_answers(tmp_path, video):
    from langchain_core.messages import AIMessage
    from scripted_llm import ScriptedChatModel

    from alref.agent.chat.agent import Chat, chat_store
    from alref.agent.chat.session import ChatSession

    pivots = Script(choose_box=AMBIGUOUS)
    chat_steps = iter([
        AIMessage(content="", tool_calls=[{"name": "select_referent", "args": {"reference": "the red square"},
                                           "id": "c1"}]),
        AIMessage(content="Done: object 1 is the square you chose."),
    ])  # fmt: skip

    def answer(messages):
        if "You help a person segment objects" in str(messages[0].content):
            return next(chat_steps)
        return pivots(messages)

    settings = load_settings(
        models="smoke", clip_frames=10, cache=False, llm="m", llm_base_url="http://127.0.0.1:9/v1"
    )
    session = ChatSession(video, tmp_path / "chat", settings)
    with chat_store(tmp_path / "chats.sqlite") as saver:
        chat = Chat(session, ScriptedChatModel([answer] * 60), saver)
        asked = chat.ask("segment the red square")
        assert asked["status"] == "question" and "Which do you mean?" in asked["answer"]
        assert asked["question"]["kind"] == "ambiguous_box" and asked["preview"] == asked["question"]["image"]
        assert not session.describe_objects()
        second = chat.ask("2")  # the next message answers the question
        assert second["status"] in ("question", "ok")
        if second["status"] == "question":  # the other clip asks too
            second = chat.ask("box 2")
        assert second["status"] == "ok" and second["answer"] == "Done: object 1 is the square you chose."
        (call,) = [c for c in second["calls"] if c["tool"] == "select_referent"]
        assert not call["error"] and json.loads(call["result"])["object_id"] == 1
        assert pivots.steps["choose_box"] == 2  # the answers resumed the selection: nothing asked twice
