"""Throwaway graphs for tests/test_langgraph_server_harness.py, served by the real ``langgraph dev``.

``settings``: one sync node that reads ``runtime.context`` (a dataclass ``context_schema``), writes a
JSON file to the path given in the input and returns what it saw in state; raises when asked to.
``chat``: a messages thread (``add_messages``) that echoes, so a test can see the server's
checkpointer keep a thread's history across runs. ``blocking``: an async node that makes a blocking
call, to show what the dev server's blockbuster does with it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime

import alref


@dataclass
class HarnessContext:
    models: str = "default"
    llm_base_url: str | None = None


class HarnessError(Exception):
    """Not one of the builtin errors whose message the server passes on to the client."""


class SettingsState(TypedDict, total=False):
    out_path: str
    fail: str  # when set, the node raises ValueError(fail) ...
    fail_custom: bool  # ... or HarnessError(fail)
    sleep: float  # time.sleep in this sync node: allowed, it runs in a worker thread
    result: dict[str, Any]


def work(state: SettingsState, runtime: Runtime[HarnessContext]) -> dict[str, Any]:
    if state.get("fail"):
        raise (HarnessError if state.get("fail_custom") else ValueError)(state["fail"])
    if state.get("sleep"):
        time.sleep(state["sleep"])
    ctx = runtime.context
    ctx_values = asdict(ctx) if is_dataclass(ctx) else ctx
    configurable = get_config().get("configurable", {})
    result = {
        "context_type": type(ctx).__name__,
        "context": ctx_values,
        "configurable_keys": sorted(k for k in configurable if not k.startswith("__")),
        "configurable_models": configurable.get("models"),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "alref_file": alref.__file__,
    }
    out = Path(state["out_path"])  # sync node: runs in a worker thread, so blocking file I/O is allowed
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))
    return {"result": result}


_settings = StateGraph(SettingsState, context_schema=HarnessContext)
_settings.add_node("work", work)
_settings.add_edge(START, "work")
_settings.add_edge("work", END)
settings = _settings.compile()  # no checkpointer: the server brings its own


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def reply(state: ChatState) -> dict[str, Any]:
    turn = sum(1 for m in state["messages"] if m.type == "human")
    return {"messages": [AIMessage(content=f"turn {turn}: {state['messages'][-1].content}")]}


_chat = StateGraph(ChatState)
_chat.add_node("reply", reply)
_chat.add_edge(START, "reply")
_chat.add_edge("reply", END)
chat = _chat.compile()


class BlockingState(TypedDict, total=False):
    done: bool


async def block(state: BlockingState) -> dict[str, Any]:
    time.sleep(0.01)  # on purpose: a blocking call on the server's event loop
    return {"done": True}


_blocking = StateGraph(BlockingState)
_blocking.add_node("block", block)
_blocking.add_edge(START, "block")
_blocking.add_edge("block", END)
blocking = _blocking.compile()
