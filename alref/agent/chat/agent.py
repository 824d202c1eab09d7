"""`alref chat`: a tool-calling LangGraph agent over one video, persisted in SQLite.

    START ─► agent ─(tool calls)─► tools ─► remember ─► agent …   ─(no tool calls / step bound)─► END

``agent`` asks the model through the same :class:`~alref.agent.llm.LLMClient` as every strategy step
(transport retries, 429 with Retry-After, the text-only-model check, the answer cache, ``llm_call``
trace events with the images sent). A tool call the model wrote as JSON text instead of
``tool_calls`` is read by the tolerant parser; an LLM that cannot be reached ends the turn with one
line saying so, and the conversation stays resumable. ``tools`` is LangGraph's ToolNode with tool
errors returned to the model as tool messages, so it can correct itself; it holds the chat's own tools
(tools.py) and those of plugins and of the MCP servers in the settings (extra_tools.py: what cannot be
offered is told to the person once, with the first turn's answer; :meth:`Chat.close` stops the servers);
``remember`` copies the
session's objects into the state (names and box prompts only; their masks are kept in the chat's
folder). Each turn also keeps the conversation's folder and its settings (model profile and models,
LLM model and base URL, never the key) in the state, so `alref chat --resume` continues it with them,
wherever it is resumed from. Images made by tools are shown to the model on its next step and never
stored in the state.
"""

from __future__ import annotations

import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command
from typing_extensions import TypedDict

from alref.agent.chat.extra_tools import chat_extras, notice_text
from alref.agent.chat.select import is_internal_thread, make_select_referent, make_track_referent
from alref.agent.chat.session import ChatSession
from alref.agent.chat.tools import make_tools
from alref.agent.checkpoint import sqlite_saver
from alref.agent.llm import LLMClient, LLMError
from alref.agent.parsing import tool_calls_in_text
from alref.config import Settings
from alref.errors import InputError
from alref.trace.record import Tracer

#: the name of the answers alref writes itself (an LLM failure, a tool call written as text); they are
#: shown to the user and kept in the conversation, but never sent back to the model
NOTICE = "alref"

SYSTEM = """You help a person segment objects in a video ({frames} frames, {width}x{height}, {fps:.1f} fps; frame
numbers start at 0). Use the tools: look at frames, find candidate boxes, segment and propagate objects, refine
them when asked ("the other one" means replace that object with another box; refine_object corrects a mask with
positive/negative points or a box on one frame), undo, rename, remove, keep a mask
only while its sound is heard, and export. Prefer select_referent for a full description. After acting, say in
one or two sentences what you did. Current objects: {objects}"""


class ChatState(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]
    video: str
    audio: str | None
    objects: dict[str, Any]
    steps: int
    settings: dict[str, Any]  # what --resume restores: see KEPT_SETTINGS
    out: str  # the conversation's folder (absolute): previews, exports, masks and its trace


#: the settings a conversation keeps and `alref chat --resume` restores (flags given then still win);
#: never the API key, which stays in the environment
KEPT_SETTINGS = ("models", "grounding_model", "segmentation_model", "concept_tracks_model", "grounding",
                 "segmentation", "audio_tagging_model", "audio_text_model", "llm", "llm_base_url")  # fmt: skip


def kept_settings(settings: Settings) -> dict[str, Any]:
    """The settings of :data:`KEPT_SETTINGS` that are set (the LLM model as used, e.g. the default gpt-4o)."""
    kept = {k: getattr(settings, k) for k in KEPT_SETTINGS if getattr(settings, k) is not None}
    return kept | ({"llm": settings.llm_model} if settings.llm_configured else {})


def resumed_settings(saved: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The settings to continue a saved conversation with: its own (``saved["settings"]``), then ``given``
    (flags on the command line) on top. Only :data:`KEPT_SETTINGS` are read from the saved state."""
    own = saved.get("settings") if isinstance(saved.get("settings"), dict) else {}
    return {k: v for k, v in own.items() if k in KEPT_SETTINGS} | dict(given)


def recover_tool_calls(answer: AIMessage, names: set[str], called: bool = False) -> AIMessage:
    """An answer without ``tool_calls`` that *is* a tool call written as JSON (the whole text, or a fenced
    block, a call with a name and arguments) becomes a real tool call when it names known tools; one that
    names an unknown tool becomes a notice to the user (nothing was done). Only when nothing was called
    yet in the turn (``called``): after a tool ran, a JSON answer (a model repeating its call, or echoing
    a tool result) is the model's answer and is kept as it is."""
    if called or answer.tool_calls or not isinstance(answer.content, str) or not answer.content.strip():
        return answer
    written = tool_calls_in_text(answer.content)
    if not written:
        return answer
    known = [(name, args) for name, args in written if name in names]
    if len(known) == len(written):
        calls = [{"name": n, "args": a, "id": f"text_call_{uuid.uuid4().hex[:8]}", "type": "tool_call"}
                 for n, a in known]  # fmt: skip
        return AIMessage(content="", tool_calls=calls, response_metadata=answer.response_metadata,
                         additional_kwargs={"alref_from_text": True})  # fmt: skip
    unknown = ", ".join(sorted({n for n, _ in written if n not in names}))
    note = (f"The model wrote a tool call as text instead of calling a tool, for a tool that does not exist "
            f"({unknown}); nothing was done. Ask again, or use a model that supports tool calling.")  # fmt: skip
    return AIMessage(content=note, name=NOTICE)


def steps_of(update: dict[str, Any]) -> list[dict[str, Any]]:
    """What a stream update of the chat graph tells a person watching the turn: the tool calls the
    model makes, each tool's result, the model's answer."""
    events: list[dict[str, Any]] = []
    for values in update.values():
        for message in (values or {}).get("messages", []) if isinstance(values, dict) else []:
            if isinstance(message, AIMessage) and message.tool_calls:
                events += [
                    {"step": "tool_call", "tool": c["name"], "args": c["args"]} for c in message.tool_calls
                ]
            elif isinstance(message, AIMessage) and message.additional_kwargs.get("alref_error"):
                continue  # no answer: the turn's report says why, in one line
            elif isinstance(message, AIMessage) and message.content:
                events.append({"step": "answer", "text": str(message.content)})
            elif isinstance(message, ToolMessage):
                events.append({"step": "tool_result", "tool": message.name, "error": message.status == "error",
                               "result": str(message.content)[:300]})  # fmt: skip
    return events


def called_in_turn(messages: list[BaseMessage]) -> bool:
    """Whether a tool was called since the user's last message."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return False
        if isinstance(message, AIMessage) and message.tool_calls:
            return True
    return False


def build_chat_graph(
    session: ChatSession, llm: LLMClient, tools: list, max_steps: int, checkpointer: Any = None
):
    names = {t.name for t in tools}

    def agent(state: ChatState) -> dict[str, Any]:
        steps = state.get("steps", 0)
        if steps >= max_steps:
            note = f"I stopped after {max_steps} steps in this turn; tell me how to go on."
            return {"messages": [AIMessage(content=note, name=NOTICE)], "steps": steps}
        info = session.info
        system = SYSTEM.format(frames=info.num_frames, width=info.width, height=info.height, fps=info.fps,
                               objects=session.describe_objects() or "none")  # fmt: skip
        history = [m for m in state["messages"] if getattr(m, "name", None) != NOTICE]
        images, session.pending_images = session.pending_images, []  # shown now, never stored in the state
        turn = sum(isinstance(m, HumanMessage) for m in state["messages"])
        try:
            answer = llm.chat([SystemMessage(content=system), *history], tools, images=images, step="chat",
                              context={"turn": turn, "step": steps + 1})  # fmt: skip
        except LLMError as exc:
            session.pending_images = images + session.pending_images
            note = " ".join(f"The LLM gave no answer: {exc}".split())
            return {"messages": [AIMessage(content=note, name=NOTICE, additional_kwargs={"alref_error": True})],
                    "steps": steps}  # fmt: skip
        called = called_in_turn(state["messages"])
        return {"messages": [recover_tool_calls(answer, names, called)], "steps": steps + 1}

    def route(state: ChatState) -> str:
        # no message yet: the page saved a correction made before the conversation's first message
        last = (state.get("messages") or [None])[-1]
        # tool calls are always answered (a dangling call breaks the next request); the agent node
        # then ends the turn once the step bound is reached
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    def remember(state: ChatState) -> dict[str, Any]:
        return {"objects": session.snapshot()}

    g = StateGraph(ChatState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode(tools, handle_tool_errors=True))
    g.add_node("remember", remember)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, ["tools", END])
    g.add_edge("tools", "remember")
    g.add_edge("remember", "agent")
    return g.compile(checkpointer=checkpointer)


#: the conversations' SQLite store
chat_store = sqlite_saver


def list_threads(db: Path) -> list[dict[str, Any]]:
    """Every conversation in the store: thread id, video, objects, turns, last message, folder. The
    threads the chat's selections checkpoint themselves in (``<thread>:select:<digest>``) are no
    conversations and are left out."""
    if not db.is_file():
        return []
    with chat_store(db) as saver:
        saver.setup()  # a store opened but never written to has no tables yet
        conn = saver.conn
        ids = [row[0] for row in conn.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY rowid")]
        rows = []
        for thread in ids:
            if is_internal_thread(thread):
                continue
            checkpoint = saver.get_tuple({"configurable": {"thread_id": thread}})
            values = checkpoint.checkpoint.get("channel_values", {}) if checkpoint else {}
            messages = values.get("messages", [])
            humans = [m for m in messages if isinstance(m, HumanMessage)]
            rows.append({"thread": thread, "video": values.get("video"), "turns": len(humans),
                         "objects": len((values.get("objects") or {}).get("objects", {})),
                         "last": humans[-1].content if humans and isinstance(humans[-1].content, str) else None,
                         "folder": values.get("out")})  # fmt: skip
        return rows


class Chat:
    """One conversation: a session, its tools, the graph and its SQLite thread.

    ``model`` is an :class:`LLMClient`, any LangChain chat model (wrapped in one), or None (one built
    from the settings); a client made here traces to the chat's folder. The pivot selection of ``select_referent`` uses the same client when an LLM is
    configured in the settings, else the baseline."""

    def __init__(self, session: ChatSession, model: Any, saver: Any, thread: str | None = None, max_steps: int = 8,
                 select_referent: Any = None) -> None:  # fmt: skip
        self.session = session
        self.thread = thread or uuid.uuid4().hex[:8]
        self.config = {"configurable": {"thread_id": self.thread}, "recursion_limit": 4 * max_steps + 10}
        settings = session.settings
        if isinstance(model, LLMClient):
            self.llm = model
            self.tracer = model.tracer
        else:
            self.tracer = Tracer(
                session.workspace.trace, secrets=[settings.api_key] if settings.api_key else []
            )
            self.llm = LLMClient(settings, chat_model=model, tracer=self.tracer)
        pivot_llm = self.llm if settings.llm_configured else None
        if select_referent is None:
            select_referent = make_select_referent(session, pivot_llm, saver, self.thread)
        tools = make_tools(
            session, select_referent, make_track_referent(session, pivot_llm, saver, self.thread)
        )
        for server in settings.mcp.servers.values():  # their keys and tokens never reach the trace
            for secret in server.secrets:
                self.tracer.add_secret(secret)
        # the plugins' tools and the MCP servers' (started now, stopped by close() or when the chat goes)
        self.extras = chat_extras(session, [t.name for t in tools])
        self._close = weakref.finalize(self, self.extras.close)
        self._notices = list(self.extras.notices)  # told the person with the first turn's answer
        self.graph = build_chat_graph(session, self.llm, tools + self.extras.tools, max_steps, saver)
        self.turns = 0
        self._traced_start = False

    def close(self) -> None:
        """The chat is over in this process: its MCP servers stop (idempotent; also done when it is collected
        or the interpreter exits)."""
        self._close()

    @classmethod
    def saved_state(cls, saver: Any, thread: str) -> dict[str, Any]:
        checkpoint = saver.get_tuple({"configurable": {"thread_id": thread}})
        if checkpoint is None:
            raise InputError(f"no conversation '{thread}'; `alref chat --list` shows the saved ones")
        return checkpoint.checkpoint.get("channel_values", {})

    def ask(self, text: str, on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """One user turn; returns what happened: tool calls with results, the answer, a preview, the
        turn's status (``ok``; ``llm_error`` when the LLM gave no answer; ``question`` when a tool asks the
        person, and the next message answers) and its LLM usage. ``on_step`` is told each step as it
        happens: ``{"step": "tool_call", "tool", "args"}``, ``{"step": "tool_result", "tool", "error",
        "result"}`` and ``{"step": "answer", "text"}``, from the graph's stream. ``notes``: what a tool had to
        tell the person (e.g. that SAM 3 runs without its post-processing kernel), also added to the answer."""
        before = len(self.graph.get_state(self.config).values.get("messages", []))
        self._trace_start(resumed=before > 0)
        usage_before = self.llm.usage()
        started = time.perf_counter()
        self.session.changed = False
        inputs: Any = {"messages": [HumanMessage(content=text)], "steps": 0, "video": str(self.session.video_path),
                       "audio": str(self.session.audio_path) if self.session.audio_path else None,
                       "settings": kept_settings(self.session.settings), "out": str(self.session.out.resolve())}  # fmt: skip
        if waiting := self.question():  # this message answers the question the last turn asked
            inputs = Command(resume={waiting[0].id: text})
            before -= 1  # the tool call that asked is this turn's too
            self.tracer.event("person_answered", thread=self.thread, answer=text, question=waiting[0].value)
        notices, notice = [], ""
        if self._notices and isinstance(inputs, dict):  # what the chat cannot offer: told once, kept
            notices, self._notices, notice = self._notices, [], notice_text(self._notices)
            told = AIMessage(content=notice, name=NOTICE, additional_kwargs={"alref_notice": True})
            inputs["messages"].append(told)
        for update in self.graph.stream(inputs, self.config, stream_mode="updates"):
            if on_step is not None:
                for event in steps_of(update):
                    on_step(event)
        state = self.graph.get_state(self.config).values
        new = state["messages"][before:]
        calls = []
        results = {m.tool_call_id: m for m in new if isinstance(m, ToolMessage)}
        for message in new:
            if isinstance(message, AIMessage):
                for call in message.tool_calls:
                    result = results.get(call["id"])
                    calls.append({"tool": call["name"], "args": call["args"],
                                  "error": result is not None and result.status == "error",
                                  "result": result.content if result is not None else None})  # fmt: skip
        self.turns += 1
        turn = len([m for m in state["messages"] if isinstance(m, HumanMessage)])
        preview = self.session.preview(turn) if self.session.changed else None
        answer = next((m.content for m in reversed(new) if isinstance(m, AIMessage) and m.content), "")
        failed = any(isinstance(m, AIMessage) and m.additional_kwargs.get("alref_error") for m in new)
        asked = None
        if pending := self.question():  # a tool stopped to ask the person: the turn's answer is the question
            asked = pending[0].value
            options = "; ".join(f"{o['number']}: {o['label']}" for o in asked.get("options") or [])
            answer = (
                asked["question"]
                + (f" ({asked['error']})" if asked.get("error") else "")
                + (f" Options: {options}." if options else "")
            )
            preview = asked.get("image") or preview
        after = self.llm.usage()
        usage = {k: after[k] - usage_before[k] for k in after if isinstance(after[k], int)}  # type: ignore[literal-required]
        status = "llm_error" if failed else ("question" if asked else "ok")
        answer = notice + ("\n" + answer if notice and answer else answer)
        notes, self.session.notes = self.session.notes, []  # a tool's note to the person (SAM 3's kernel)
        answer = "\n".join([answer, *notes]) if answer else "\n".join(notes)
        report = {"thread": self.thread, "status": status, "question": asked, "calls": calls,
                  "answer": answer, "preview": preview, "objects": self.session.describe_objects(),
                  "llm": usage, "seconds": round(time.perf_counter() - started, 3), "notices": notices,
                  "notes": notes}  # fmt: skip
        self.tracer.event("chat_turn", turn=turn, text=text, **report)
        return report

    def question(self) -> list[Any]:
        """The questions the conversation waits on (a tool asked the person; the next message answers)."""
        snapshot = self.graph.get_state(self.config)
        return [item for task in snapshot.tasks for item in task.interrupts]

    def _trace_start(self, resumed: bool) -> None:
        """Once per process, before its first turn: what the conversation is about and runs with."""
        if self._traced_start:
            return
        self._traced_start = True
        session = self.session
        self.tracer.event("chat_start", thread=self.thread, resumed=resumed, video=str(session.video_path),
                          audio=str(session.audio_path) if session.audio_path else None,
                          input=session.info.to_dict(), settings=kept_settings(session.settings),
                          extra_tools=self.extras.describe())  # fmt: skip
