"""The graphs LangGraph's own server runs (``langgraph.json``: ``langgraph dev``, LangGraph Studio, the
LangGraph SDK): ``segment`` (one `alref segment` run) and ``chat`` (the chat agent, one turn per run,
its objects kept in the thread's state).

A run's context arrives as JSON, so it holds settings, never live objects: any :class:`Settings` key
(``{"models": "smoke", "llm": "gpt-4o", "llm_base_url": "http://…/v1"}``), checked like the config
file (an unknown key fails the run with one line). API keys come from the server's environment
(``ALREF_LLM_API_KEY`` / ``OPENAI_API_KEY``), never from a run: a context with ``llm_api_key`` is
refused, so a key never reaches a thread's state, the server's run records or a trace. So is ``mcp``:
the MCP servers whose tools the chat offers are programs the server starts, named by its own alref.toml
only (started once per server process, shared by the threads). The chat's context also names its
``video`` (and optional ``audio``, ``out``).

Errors a user can fix fail the run with their one-line message (as a ``ValueError``, the type the
server passes to clients with its message); the server keeps serving.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.config import get_config, get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from alref.config import Settings
from alref.errors import AlrefError
from alref.progress import Reporter

CHAT_KEYS = ("video", "audio", "out", "max_steps")
FORBIDDEN = {"llm_api_key": "pass API keys in the server's environment (ALREF_LLM_API_KEY or OPENAI_API_KEY), "
             "never in a run's context",
             "mcp": "MCP servers (programs the server would start) come from the server's alref.toml, never from "
             "a run's context"}  # fmt: skip


class RunFailed(ValueError):
    """A run failed for a reason the user can fix; the message says what and what to do."""


class SegmentContext(TypedDict, total=False):
    """Any alref setting as JSON (``alref segment --help`` lists them; e.g. ``{"models": "smoke"}``).

    Deliberately declares no keys: LangGraph's server drops context keys its schema does not name,
    which would turn a mistyped setting into a silently ignored one; with no declared keys every key
    reaches :func:`settings_from_context`, which refuses the unknown ones."""


class ChatContext(TypedDict, total=False):
    """Any alref setting as JSON, plus ``video`` (the video to talk about, on the server's machine) and
    the optional ``audio``, ``out`` (where previews and the trace go) and ``max_steps``. No declared
    keys, for the reason :class:`SegmentContext` gives."""


def settings_from_context(context: Any, allowed_extra: tuple[str, ...] = ()) -> Settings:
    """Settings from a run's context (defaults < config file < ALREF_* env < context)."""
    from alref.config import load_settings

    values = dict(context or {})
    for key, why in FORBIDDEN.items():
        if key in values:
            raise RunFailed(f"context key '{key}' is not accepted: {why}")
    unknown = sorted(set(values) - set(Settings.model_fields) - set(allowed_extra))
    if unknown:
        raise RunFailed(
            f"unknown setting(s) in the run's context: {', '.join(unknown)} (see `alref segment --help`)"
        )
    try:
        return load_settings(**{k: v for k, v in values.items() if k not in allowed_extra})
    except AlrefError as exc:
        raise RunFailed(" ".join(str(exc).split())) from None


def _fail(exc: AlrefError) -> RunFailed:
    return RunFailed(" ".join(str(exc).split()))


class _StreamReporter(Reporter):
    """Progress as custom stream events: ``{"stage", "done", "total"}`` and ``{"note"}``."""

    def __init__(self) -> None:
        super().__init__()
        self.write = get_stream_writer()

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[_StreamStage]:
        self.write({"stage": name, "done": 0, "total": total})
        yield _StreamStage(self.write, name, total)

    def note(self, message: str) -> None:
        super().note(message)
        self.write({"note": message})


class _StreamStage:
    def __init__(self, write: Any, name: str, total: int | None) -> None:
        self.write, self.name, self.total, self.done = write, name, total, 0

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        self.write({"stage": self.name, "done": self.done, "total": self.total})


# ---------------------------------------------------------------------------------------------
# segment


class SegmentInput(TypedDict, total=False):
    video: str  # a video file or a folder of frames, on the server's machine
    references: list[str]  # one object per sentence
    out: str  # the output folder (default: alref-out/<video name>, relative to the server's folder)
    force: bool


class SegmentOutput(TypedDict, total=False):
    status: str
    mode: str
    out: str
    result: str  # the path of result.json
    references: list[dict[str, Any]]  # id, text, status, reason, frames with a mask


class SegmentState(SegmentInput, SegmentOutput, total=False):
    pass


def segment(state: SegmentState, runtime: Runtime[Any]) -> dict[str, Any]:
    """The whole `alref segment` pipeline for the input's video and references."""
    from alref.agent.questions import asking_through_interrupt
    from alref.pipeline.run import segment_video

    # a person is there (Studio, the SDK): with an LLM, several candidates that fit equally stop the run
    # with a question (without one nothing is ever ambiguous: the run is exactly `alref segment`'s)
    settings = settings_from_context(runtime.context)
    if settings.llm_configured and "ask" not in (runtime.context or {}):
        settings = settings.model_copy(update={"ask": True})
    video = str(state.get("video") or "").strip()
    if not video:
        raise RunFailed('the input needs "video": a video file or a folder of frames on the server')
    references = state.get("references")
    if isinstance(references, str):
        references = [references]
    if not references:
        raise RunFailed('the input needs "references": a list of sentences, e.g. ["the red square"]')
    out = Path(state.get("out") or Path("alref-out") / Path(video).stem)
    reporter = _StreamReporter()

    def run(answers: dict[str, Any] | None) -> dict[str, Any]:
        force = bool(state.get("force")) and not answers  # answers continue the run: never restart it
        return segment_video(video, list(references), out, settings, reporter, force=force, answers=answers)

    try:  # a question stops the run with interrupt(); Command(resume=answer) brings the answer
        result = asking_through_interrupt(run)
    except AlrefError as exc:
        raise _fail(exc) from None
    refs = [{"id": r["id"], "text": r["text"], "status": r["status"], "reason": r["reason"],
             "frames_with_mask": r["masks"]["frames_with_mask"]} for r in result["references"]]  # fmt: skip
    return {"status": result["status"], "mode": result["mode"], "out": str(out), "result": str(out / "result.json"),
            "references": refs}  # fmt: skip


def build_segment_graph():
    g = StateGraph(
        SegmentState, context_schema=SegmentContext, input_schema=SegmentInput, output_schema=SegmentOutput
    )
    g.add_node("segment", segment)
    g.add_edge(START, "segment")
    g.add_edge("segment", END)
    return g.compile()


# ---------------------------------------------------------------------------------------------
# chat


class ChatThreadState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    video: str
    objects: dict[str, Any]  # the session's objects (names and box prompts); their masks are in ``out``
    out: str  # the conversation's folder (absolute), kept so a restarted server writes to the same one


_sessions: dict[tuple[str, str, str], Any] = {}
_sessions_lock = threading.Lock()


def _session(thread: str, video: str, audio: str | None, out: Path, settings: Settings) -> Any:
    """One chat session per (thread, video, settings) in this server process: the models, the SAM 2
    session and the decoded frames survive between the thread's runs."""
    from alref.agent.chat.session import ChatSession

    key = (thread, str(Path(video).expanduser().resolve()), settings.model_dump_json())
    with _sessions_lock:
        if key not in _sessions:
            _sessions[key] = ChatSession(video, out, settings, audio)
        return _sessions[key]


_extras: dict[int, Any] = {}  # id of a session in _sessions -> its ChatExtras
_mcp: dict[str, Any] = {}  # the MCP servers' settings (JSON) -> their connections, one per server process


def _extras_of(session: Any, reserved: list[str]) -> Any:
    """The plugins' and MCP servers' tools of a session (made once; the MCP servers are started once per
    server process, shared by every thread, and stopped when the process exits)."""
    from alref.agent.chat.extra_tools import chat_extras
    from alref.tools.mcp_client import McpConnections

    servers = session.settings.mcp
    with _sessions_lock:
        if servers.servers and (key := servers.model_dump_json()) not in _mcp:
            _mcp[key] = McpConnections(servers.servers).start()
            atexit.register(_mcp[key].close)
        if id(session) not in _extras:
            connections = _mcp.get(servers.model_dump_json()) if servers.servers else None
            _extras[id(session)] = chat_extras(session, reserved, connections)
        return _extras[id(session)]


def chat(state: ChatThreadState, runtime: Runtime[Any]) -> dict[str, Any]:
    """One turn: the chat agent answers the new messages with its tools (as `alref chat` does)."""
    from langchain_core.messages import AIMessage

    from alref.agent.chat.agent import NOTICE, build_chat_graph, steps_of
    from alref.agent.chat.extra_tools import notice_text
    from alref.agent.chat.select import make_select_referent, make_track_referent
    from alref.agent.chat.tools import make_tools
    from alref.agent.llm import LLMClient
    from alref.trace.record import Tracer

    context = dict(runtime.context or {})
    settings = settings_from_context(context, CHAT_KEYS)
    if not settings.llm_configured:
        raise RunFailed("the chat needs a tool-calling LLM: set llm (and llm_base_url) in the context")
    video = str(context.get("video") or state.get("video") or "").strip()
    if not video:
        raise RunFailed('the context needs "video": the video to talk about, on the server')
    thread = str(get_config().get("configurable", {}).get("thread_id") or "default")
    out = Path(context.get("out") or state.get("out") or Path("alref-chat") / thread).resolve()
    try:
        session = _session(thread, video, context.get("audio"), out, settings)
        if session.snapshot()["objects"] != (state.get("objects") or {}).get("objects", {}):
            session.restore(state.get("objects"))  # another process (or a restart) held the thread before
        tracer = Tracer(session.workspace.trace, secrets=[settings.api_key] if settings.api_key else [])
        llm = LLMClient(settings, tracer=tracer)
        tools = make_tools(
            session,
            make_select_referent(session, llm, None, thread),
            make_track_referent(session, llm, None, thread),
        )
        for server in settings.mcp.servers.values():  # their keys and tokens never reach the trace
            for secret in server.secrets:
                tracer.add_secret(secret)
        extras = _extras_of(session, [t.name for t in tools])
        inner = build_chat_graph(session, llm, tools + extras.tools, int(context.get("max_steps") or 8))
        before = len(state["messages"])
        write = get_stream_writer()  # the turn's steps as custom stream events, as they happen
        told = []  # what the chat cannot offer (an MCP server that did not start ...): once per thread
        if extras.notices and not any(m.additional_kwargs.get("alref_notice") for m in state["messages"]):
            text = notice_text(extras.notices)
            write({"note": text})
            told = [AIMessage(content=text, name=NOTICE, additional_kwargs={"alref_notice": True})]
        result: dict[str, Any] = {}
        for mode, chunk in inner.stream({"messages": state["messages"], "steps": 0}, {"recursion_limit": 100},
                                        stream_mode=["updates", "values"]):  # fmt: skip
            if mode == "updates":
                for event in steps_of(chunk):
                    write(event)
            else:
                result = chunk
    except AlrefError as exc:
        raise _fail(exc) from None
    return {
        "messages": [*told, *result["messages"][before:]],
        "objects": session.snapshot(),
        "video": video,
        "out": str(out),
    }


def build_chat_server_graph():
    g = StateGraph(ChatThreadState, context_schema=ChatContext)
    g.add_node("chat", chat)
    g.add_edge(START, "chat")
    g.add_edge("chat", END)
    return g.compile()


segment_graph = build_segment_graph()
chat_graph = build_chat_server_graph()
