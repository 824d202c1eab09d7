"""Honest, resumable conversations (#19 part 3), on every chat surface (the terminal chat, the app's
session, the LangGraph chat graph):

- a model that echoes a tool result (JSON with a "name" key) keeps its answer; only an answer that *is*
  a tool call, in a turn where nothing was called, is read as one;
- which part failed is said: the chat's models unavailable (named, with how to get them) vs no LLM;
- `alref chat --resume ID` with no model or LLM flags continues with the conversation's own settings
  (flags still win; the API key is never stored), shows its objects from the stored masks without
  running SAM 2 (model calls counted; only missing masks are recomputed), and writes to the
  conversation's own folder (its trace included) wherever it is resumed from;
- `--list` and the page hide the selections' internal threads; the decoded frames go when the chat ends
  unless --keep-work; the page's edit buttons answer with a sentence.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
import synth
from agent_script import Script
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from llm_server import Reply, tool_reply
from scripted_llm import ScriptedChatModel

from alref.agent.chat.agent import Chat, chat_store, list_threads, recover_tool_calls
from alref.agent.chat.session import ChatSession
from alref.agent.parsing import tool_calls_in_text
from alref.config import load_settings

W, H, N = 160, 120, 20
KEY = "sk-alref-test-RESUME-0123456789"
TOOLS = {"segment_box", "list_objects", "export"}


@pytest.fixture
def video(tmp_path):
    return synth.write_shapes_video(tmp_path / "v.mp4", num_frames=N, width=W, height=H, fps=10)


def red() -> list[float]:
    return list(map(float, synth.red_square_box(0, N, W, H)))


# --- what counts as a tool call written as text (no models) -------------------------------------------


ECHO = '{"object_id": 1, "name": "red square", "prompts": [[0, [10.0, 20.0, 40.0, 50.0]]], "frames_with_mask": 20}'


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        (ECHO, []),  # a tool result: a "name" but no arguments
        (f"Done. Here is the object: {ECHO}", []),
        ('I will call {"name": "list_objects", "arguments": {}} now.', []),  # JSON inside prose
        ('{"name": "list_objects", "arguments": {}}', [("list_objects", {})]),
        ('```json\n{"name": "export", "arguments": {"folder": null}}\n```', [("export", {"folder": None})]),
        ('Sure:\n```\n{"tool": "list_objects", "args": {}}\n```', [("list_objects", {})]),
        ('[{"name": "list_objects", "arguments": {}}, {"object_id": 2, "name": "dog"}]', []),  # not all calls
        ('{"tool_calls": [{"type": "function", "function": {"name": "export", "arguments": "{}"}}]}', [("export", {})]),
    ],
)  # fmt: skip
def test_only_an_answer_that_is_a_tool_call_is_read_as_one(text, calls):
    assert tool_calls_in_text(text) == calls


def test_an_answer_is_replaced_only_when_nothing_was_called_in_the_turn():
    echo = AIMessage(content=ECHO)
    assert recover_tool_calls(echo, TOOLS) is echo  # kept: not "nothing was done"
    written = AIMessage(content='{"name": "list_objects", "arguments": {}}')
    assert recover_tool_calls(written, TOOLS).tool_calls[0]["name"] == "list_objects"
    assert recover_tool_calls(written, TOOLS, called=True) is written  # a tool ran: an answer, not a call
    unknown = AIMessage(content='{"name": "paint_it_blue", "arguments": {}}')
    assert "nothing was done" in recover_tool_calls(unknown, TOOLS).content
    assert recover_tool_calls(unknown, TOOLS, called=True) is unknown


# --- the echo on every chat surface -------------------------------------------------------------------


def _echo_last_tool_result(messages):
    """A model that answers with the tool result it was given, verbatim."""
    return next(m.content for m in reversed(messages) if isinstance(m, ToolMessage))


@pytest.mark.slow
def test_the_terminal_chat_keeps_an_answer_that_echoes_a_tool_result(tmp_path, video):
    box = red()
    script = [
        AIMessage(content="", tool_calls=[{"name": "segment_box", "args": {"frame": 0, "box": box, "name": "red square"},
                                           "id": "c1"}]),
        _echo_last_tool_result,
        AIMessage(content="", tool_calls=[{"name": "list_objects", "args": {}, "id": "c2"}]),
        lambda messages: f'Listed them. {{"name": "segment_box", "arguments": {{"frame": 0, "box": {box}, "name": "x"}}}}',
        AIMessage(content="", tool_calls=[{"name": "list_objects", "args": {}, "id": "c3"}]),
        '```json\n{"name": "segment_box", "arguments": {"frame": 0, "box": [0, 0, 20, 20], "name": "again"}}\n```',
    ]  # fmt: skip
    settings = load_settings(models="smoke")
    model = ScriptedChatModel(script)
    with chat_store(tmp_path / "db.sqlite") as saver:
        chat = Chat(ChatSession(video, tmp_path / "c", settings), model, saver)
        first = chat.ask("segment the red square")
        result = first["calls"][0]["result"]
        assert json.loads(result)["name"] == "red square"  # the echo holds a "name" key
        assert first["answer"] == result and "nothing was done" not in first["answer"]
        second = chat.ask("what is there?")  # JSON of a call inside prose after a tool ran: the answer
        assert second["answer"].startswith("Listed them.") and [c["tool"] for c in second["calls"]] == [
            "list_objects"
        ]
        third = chat.ask("again")  # the model repeats a call as a fenced block after a tool ran: not re-run
        assert [c["tool"] for c in third["calls"]] == ["list_objects"] and third["answer"].startswith(
            "```json"
        )
        assert len(third["objects"]) == 1 and model.remaining == 0
    chat.session.close()


def _echo_server(llm_server):
    box = red()

    def answer(body):
        last = body["messages"][-1]
        if last["role"] == "tool":
            return Reply(last["content"])  # the tool result, verbatim
        return tool_reply("c1", "segment_box", {"frame": 0, "box": box, "name": "red square"})

    llm_server.default = answer


@pytest.mark.slow
def test_the_app_session_keeps_the_echo_and_answers_edits_with_sentences(tmp_path, video, llm_server):
    from alref.app.session import AppConfig, TabSession

    _echo_server(llm_server)
    given = {"models": "smoke", "llm": "m", "llm_base_url": llm_server.base_url, "llm_backoff": 0}
    tab = TabSession(
        AppConfig(given=given, db=tmp_path / "db.sqlite", out=tmp_path / "app", chat_out=tmp_path / "chats")
    )
    try:
        tab.open(video)
        report = tab.ask("segment the red square")
        assert json.loads(report["answer"])["name"] == "red square"
        assert (
            tab.history[-1][1].startswith(report["answer"]) and "nothing was done" not in tab.history[-1][1]
        )
        tab.edit("rename", 1, "the square")
        assert tab.history[-1] == ("assistant", "Renamed object 1 to “the square”.")
        tab.edit("remove", 1)
        assert tab.history[-1] == ("assistant", "Removed object 1 (“the square”); there are no objects.")
        tab.edit("undo")
        said = tab.history[-1][1]
        assert said.startswith("Undid the last change; the objects are object 1 “the square” (frames 0–")
        assert "{" not in said and "'" not in said
    finally:
        tab.close()


@pytest.mark.slow
def test_the_langgraph_chat_graph_keeps_the_echo(tmp_path, video, llm_server):
    from alref.app.graphs import chat_graph

    _echo_server(llm_server)
    context = {"models": "smoke", "llm": "m", "llm_base_url": llm_server.base_url, "video": str(video),
               "out": str(tmp_path / "c")}  # fmt: skip
    state = chat_graph.invoke({"messages": [HumanMessage(content="segment the red square")]},
                              {"configurable": {"thread_id": "echo-thread"}}, context=context)  # fmt: skip
    answer = state["messages"][-1]
    assert isinstance(answer, AIMessage) and json.loads(answer.content)["name"] == "red square"
    assert "nothing was done" not in answer.content
    assert state["objects"]["objects"]["1"]["name"] == "red square"
    assert state["out"] == str((tmp_path / "c").resolve())


# --- which part failed ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_page_says_the_models_are_unavailable_not_that_an_llm_is_missing(tmp_path, video, llm_server):
    from alref.app import web
    from alref.app.session import AppConfig, ChatUnavailableError, TabSession
    from alref.errors import InputError

    folders = {"db": tmp_path / "db.sqlite", "out": tmp_path / "app", "chat_out": tmp_path / "chats"}
    offline = TabSession(AppConfig(given={"llm": "m", "llm_base_url": llm_server.base_url}, **folders))
    offline.open(video)  # the default models are not in the (empty, offline) cache: the video still opens
    assert offline.video is not None and offline.chat is None
    with pytest.raises(ChatUnavailableError) as failed:
        offline.ask("segment the red square")
    said = str(failed.value)
    assert "models are unavailable" in said and "IDEA-Research/grounding-dino-base" in said
    assert "alref models pull" in said and "--llm MODEL" not in said
    assert "alref models pull" in web._chat_error(offline)  # what the page's status shows on opening
    no_llm = TabSession(AppConfig(given={"models": "smoke"}, **folders))
    no_llm.open(video)
    with pytest.raises(InputError, match="needs a tool-calling LLM: start alref app with --llm MODEL"):
        no_llm.ask("hi")
    assert web._chat_error(no_llm) == ""


def test_alref_chat_says_the_models_are_unavailable_not_that_an_llm_is_missing(run_cli, video, llm_server):
    code, _, err = run_cli("chat", video, "--llm", "m", "--llm-base-url", llm_server.base_url, "-m", "hi")
    assert (
        code == 3 and "model 'IDEA-Research/grounding-dino-base' (grounding) is not available offline" in err
    )
    assert "alref models pull" in err and "needs a tool-calling LLM" not in err
    code, _, err = run_cli("chat", video, "-m", "hi")
    assert code == 2 and "needs a tool-calling LLM" in err


# --- resume -----------------------------------------------------------------------------------------------


def _chat_llm(llm_server):
    """Turn 1 selects the red square (the pivot steps scripted), later turns list the objects."""
    script = Script()

    def answer(body):
        if not body.get("tools"):
            return Reply(script(body["messages"]))
        messages = body["messages"]
        if messages[-1]["role"] == "tool":
            return Reply("Done.")
        if "red square" in messages[-1]["content"]:
            return tool_reply("c1", "select_referent", {"reference": "the red square"})
        return tool_reply("c2", "list_objects", {})

    llm_server.default = answer


class _Counts:
    """SAM 2 runs and loads, counted."""

    def __init__(self, monkeypatch):
        from alref.tools.segmentation import Sam2VideoSegmenter, SegmentationSession

        self.propagations = self.loads = 0
        propagate, load = SegmentationSession.propagate, Sam2VideoSegmenter.load.__func__

        def counted_propagate(session, *args, **kwargs):
            self.propagations += 1
            return propagate(session, *args, **kwargs)

        def counted_load(cls, *args, **kwargs):
            self.loads += 1
            return load(cls, *args, **kwargs)

        monkeypatch.setattr(SegmentationSession, "propagate", counted_propagate)
        monkeypatch.setattr(Sam2VideoSegmenter, "load", classmethod(counted_load))


@pytest.mark.slow
def test_resume_uses_the_conversations_settings_masks_and_folder(
    run_cli, tmp_path, video, llm_server, monkeypatch
):
    _chat_llm(llm_server)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    db = tmp_path / "chats.sqlite"
    code, out, err = run_cli("chat", video, "--models", "smoke", "--llm", "m", "--llm-base-url", llm_server.base_url,
                             "--llm-backoff", "0", "--db", db, "-m", "segment the red square", "--json")  # fmt: skip
    assert code == 0, err
    first = json.loads(out.splitlines()[-1])
    thread = first["thread"]
    folder = tmp_path / "alref-chat" / thread  # the default folder, under the folder it was started in
    assert first["calls"][0]["tool"] == "select_referent" and first["objects"][0]["frames_with_mask"] > 0
    assert list((folder / "work" / "chat").glob("masks_*.json"))
    assert not list((folder / "work").glob("frames_*"))  # the decoded frames went when the chat ended
    with sqlite3.connect(db) as conn:
        threads = {row[0] for row in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    assert any(":select:" in t for t in threads)  # the selection checkpoints itself in its own thread
    assert KEY.encode() not in db.read_bytes()

    code, out, _ = run_cli("chat", "--db", db, "--list", "--json")
    assert [r["thread"] for r in json.loads(out)] == [thread]  # the internal thread is not listed
    assert json.loads(out)[0]["folder"] == str(folder.resolve())

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("OPENAI_API_KEY")
    counts = _Counts(monkeypatch)
    code, out, err = run_cli("chat", "--resume", thread, "--db", db, "-m", "list the objects")
    assert code == 0, err
    assert "object 1 the red square: frames 0-" in err  # shown before the first turn, from the stored masks
    assert "alref: the LLM" not in out and "Done." in out
    assert counts.propagations == 0 and counts.loads == 0  # no SAM 2 at all
    assert llm_server.chat_requests[-1]["model"] == "m"  # the conversation's LLM, server and model
    assert not (elsewhere / "alref-chat").exists()  # everything went to the conversation's own folder
    turns = [json.loads(line) for line in (folder / "trace" / "events.jsonl").read_text().splitlines()]
    assert [e["turn"] for e in turns if e["kind"] == "chat_turn"] == [1, 2]
    listed = json.loads(
        next(e for e in turns if e["kind"] == "chat_turn" and e["turn"] == 2)["calls"][0]["result"]
    )
    assert (
        listed[0]["name"] == "the red square"
        and listed[0]["frames_with_mask"] == first["objects"][0]["frames_with_mask"]
    )

    # flags given on the command line still win; a missing mask file is the only thing recomputed
    for stored in (folder / "work" / "chat").glob("masks_*.json"):
        stored.unlink()
    code, out, err = run_cli("chat", "--resume", thread, "--db", db, "--llm", "other", "-m", "list the objects",
                             "--json")  # fmt: skip
    assert code == 0, err
    assert llm_server.chat_requests[-1]["model"] == "other"
    assert counts.propagations == 1 and counts.loads == 1
    assert (
        json.loads(out.splitlines()[-1])["objects"][0]["frames_with_mask"]
        == first["objects"][0]["frames_with_mask"]
    )

    # the page continues it the same way: its own settings and folder, its masks, no SAM 2
    from alref.app.session import AppConfig, TabSession

    tab = TabSession(AppConfig(given={}, db=db, out=tmp_path / "app", chat_out=tmp_path / "page-chats"))
    try:
        tab.resume(thread)
        assert tab.chat is not None and tab.chat.session.out == folder.resolve()
        assert tab.chat.session.settings.models == "smoke" and tab.chat.session.settings.llm == "other"
        assert tab.objects()[0]["name"] == "the red square" and counts.propagations == 1
        assert [r["thread"] for r in tab.threads()] == [thread]
    finally:
        tab.close()

    page = tmp_path / "chat.html"
    code, _, err = run_cli("trace", "export", folder, "--html", page)
    assert code == 0, err
    text = page.read_text()
    for wrong in ("video False", "timings False", "“?”", "(None)"):
        assert wrong not in text
    turn1, turn2 = text.index("Turn 1: “segment the red square”"), text.index("Turn 2: “list the objects”")
    assert turn1 < text.index("select_referent “the red square” → object 1") < turn2
    assert "num_frames 20" in text and "turn 1 " in text and "box 1 (red)" in text


@pytest.mark.slow
def test_keep_work_keeps_the_decoded_frames(run_cli, tmp_path, video, llm_server):
    llm_server.default = lambda body: (
        Reply("Done.") if body["messages"][-1]["role"] == "tool"
        else tool_reply("c1", "segment_box", {"frame": 0, "box": red(), "name": "red square"})
    )  # fmt: skip
    code, _, err = run_cli("chat", video, "--models", "smoke", "--llm", "m", "--llm-base-url", llm_server.base_url,
                           "--db", tmp_path / "db.sqlite", "--out", tmp_path / "kept", "--keep-work",
                           "-m", "segment the red square")  # fmt: skip
    assert code == 0, err
    assert list((tmp_path / "kept" / "work").glob("frames_*.u8"))
    assert list((tmp_path / "kept" / "work").glob("frames_*.done"))


def test_list_threads_hides_the_selections_threads(tmp_path):
    with chat_store(tmp_path / "db.sqlite") as saver:
        from langgraph.checkpoint.base import empty_checkpoint

        for thread in ("abcd1234", "abcd1234:select:0123456789ab", "x:select:deadbeef0000"):
            saver.put(
                {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}, empty_checkpoint(), {}, {}
            )
    assert [r["thread"] for r in list_threads(tmp_path / "db.sqlite")] == ["abcd1234"]
