"""`alref chat`: a tool-calling LangGraph agent over one video, persisted in SQLite.

    START ─► agent ─(tool calls)─► tools ─► remember ─► agent …   ─(no tool calls / step bound)─► END

``tools`` is LangGraph's ToolNode with tool errors returned to the model as tool messages, so it
can correct itself; ``remember`` copies the session's objects into the state (names and box
prompts only) so a conversation resumed in a new process rebuilds its masks. Images made by tools
are shown to the model on its next step and never stored in the state.
"""

from __future__ import annotations

import base64
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from typing_extensions import TypedDict

from alref.agent.chat.session import ChatSession
from alref.agent.chat.tools import make_tools
from alref.errors import InputError
from alref.trace.record import Tracer

SYSTEM = """You help a person segment objects in a video ({frames} frames, {width}x{height}, {fps:.1f} fps; frame
numbers start at 0). Use the tools: look at frames, find candidate boxes, segment and propagate objects, refine
them when asked ("the other one" means replace that object with another box), undo, rename, remove, keep a mask
only while its sound is heard, and export. Prefer select_referent for a full description. After acting, say in
one or two sentences what you did. Current objects: {objects}"""


class ChatState(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]
    video: str
    audio: str | None
    objects: dict[str, Any]
    steps: int


def _image_message(paths: list[str]) -> HumanMessage:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "The images the last tools made:"}]
    for path in paths:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}", "detail": "high"}}
        )
    return HumanMessage(content=parts)


def build_chat_graph(session: ChatSession, model: Any, tools: list, max_steps: int, checkpointer: Any = None):
    bound = model.bind_tools(tools)

    def agent(state: ChatState) -> dict[str, Any]:
        steps = state.get("steps", 0)
        if steps >= max_steps:
            note = f"I stopped after {max_steps} steps in this turn; tell me how to go on."
            return {"messages": [AIMessage(content=note)], "steps": steps}
        info = session.info
        system = SYSTEM.format(frames=info.num_frames, width=info.width, height=info.height, fps=info.fps,
                               objects=session.describe_objects() or "none")  # fmt: skip
        messages: list[BaseMessage] = [SystemMessage(content=system), *state["messages"]]
        if session.pending_images:  # shown now, never stored in the state
            messages.append(_image_message(session.pending_images))
            session.pending_images = []
        return {"messages": [bound.invoke(messages)], "steps": steps + 1}

    def route(state: ChatState) -> str:
        last = state["messages"][-1]
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


@contextmanager
def chat_store(path: Path) -> Iterator[Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


def list_threads(db: Path) -> list[dict[str, Any]]:
    """Every conversation in the store: thread id, video, objects, turns, last message."""
    if not db.is_file():
        return []
    with chat_store(db) as saver:
        conn = saver.conn
        ids = [row[0] for row in conn.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY rowid")]
        rows = []
        for thread in ids:
            checkpoint = saver.get_tuple({"configurable": {"thread_id": thread}})
            values = checkpoint.checkpoint.get("channel_values", {}) if checkpoint else {}
            messages = values.get("messages", [])
            humans = [m for m in messages if isinstance(m, HumanMessage)]
            rows.append({"thread": thread, "video": values.get("video"), "turns": len(humans),
                         "objects": len((values.get("objects") or {}).get("objects", {})),
                         "last": humans[-1].content if humans and isinstance(humans[-1].content, str) else None})  # fmt: skip
        return rows


class Chat:
    """One conversation: a session, its tools, the graph and its SQLite thread."""

    def __init__(self, session: ChatSession, model: Any, saver: Any, thread: str | None = None, max_steps: int = 8,
                 select_referent: Any = None) -> None:  # fmt: skip
        self.session = session
        self.thread = thread or uuid.uuid4().hex[:8]
        self.config = {"configurable": {"thread_id": self.thread}, "recursion_limit": 4 * max_steps + 10}
        self.graph = build_chat_graph(
            session, model, make_tools(session, select_referent or self._no_select), max_steps, saver
        )
        self.turns = 0
        self.tracer = Tracer(
            session.out / "trace", secrets=[session.settings.api_key] if session.settings.api_key else []
        )

    @staticmethod
    def _no_select(reference: str, object_id: int | None = None) -> dict[str, Any]:
        raise InputError(
            "select_referent needs the pivot selection; use ground_phrase and segment_box instead"
        )

    @classmethod
    def saved_state(cls, saver: Any, thread: str) -> dict[str, Any]:
        checkpoint = saver.get_tuple({"configurable": {"thread_id": thread}})
        if checkpoint is None:
            raise InputError(f"no conversation '{thread}'; `alref chat --list` shows the saved ones")
        return checkpoint.checkpoint.get("channel_values", {})

    def ask(self, text: str) -> dict[str, Any]:
        """One user turn; returns what happened: tool calls with results, the answer, a preview."""
        before = len(self.graph.get_state(self.config).values.get("messages", []))
        self.session.changed = False
        inputs = {"messages": [HumanMessage(content=text)], "steps": 0, "video": str(self.session.video_path),
                  "audio": str(self.session.audio_path) if self.session.audio_path else None}  # fmt: skip
        state = self.graph.invoke(inputs, self.config)
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
        report = {"thread": self.thread, "calls": calls, "answer": answer, "preview": preview,
                  "objects": self.session.describe_objects()}  # fmt: skip
        self.tracer.event("chat_turn", turn=turn, text=text, **report)
        return report
