"""The chat agent's tools beyond its own (alref/agent/chat/tools.py): the plugins' and the MCP servers'.

- Plugins: every registered :class:`~alref.tools.registry.ToolSpec` with a ``make_tool`` whose role the
  pipeline does not use (grounding, segmentation, audio tagging, audio-text and concept tracks have their
  own flags and their own chat tools) is offered as its LangChain tool; its implementation is loaded on
  the tool's first use (``spec.load`` with its model, on the configured device).
- MCP servers: the ``mcp`` setting's servers (:mod:`alref.tools.mcp_client`), one connection each for
  the chat's lifetime; their tools are named ``<server>_<tool>`` and images they return are shown to
  the model on its next step, as the chat's own tools' images are.

Both go into the same ToolNode as the chat's own tools, so their calls are traced the same way (the
``llm_call`` event's ``tool_calls``, the ``chat_turn`` event's ``calls``) and a failing tool is a tool
error the model reads. What cannot be offered (a server that does not start, a plugin whose tool
cannot be made, a name already taken) is one line in :attr:`ChatExtras.notices`, which the chat tells
the person once; the chat goes on without it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from langchain_core.tools import BaseTool

from alref.agent.chat.session import ChatSession
from alref.config import Settings
from alref.tools.mcp_client import McpConnections
from alref.tools.registry import DEFAULTS, ToolSpec, one_line, registry

#: the roles the pipeline fills itself; a plugin of another role is offered to the chat
PIPELINE_ROLES = frozenset(DEFAULTS)
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class ChatExtras:
    """The extra tools of one chat, the lines saying what could not be offered, and the MCP connections
    (closed with :meth:`close` when this object owns them)."""

    tools: list[BaseTool] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    connections: McpConnections | None = None
    owns_connections: bool = True

    def close(self) -> None:
        if self.connections is not None and self.owns_connections:
            self.connections.close()

    def describe(self) -> dict[str, Any]:
        """For the trace's ``chat_start``: the extra tools by name, the MCP servers, the notices."""
        return {
            "tools": [t.name for t in self.tools],
            "mcp": self.connections.describe() if self.connections is not None else {},
            "notices": list(self.notices),
        }


def _loader(spec: ToolSpec, settings: Settings) -> Callable[[], Any]:
    """A getter that loads the plugin's implementation once, on first use."""
    lock = threading.Lock()
    loaded: list[Any] = []

    def get() -> Any:
        with lock:
            if not loaded:
                from alref.tools.loading import resolve_device
                from alref.tools.registry import model_source

                loaded.append(spec.load(model_source(spec, settings), resolve_device(settings.device)))
            return loaded[0]

    return get


def plugin_tools(settings: Settings, reserved: Collection[str] = ()) -> tuple[list[BaseTool], list[str]]:
    """The LangChain tools of the registered tools whose role the pipeline does not use, and one line per
    tool left out (its ``make_tool`` failed, gave no tool, or a name that is invalid or taken)."""
    tools: list[BaseTool] = []
    notices: list[str] = []
    taken = set(reserved)
    for spec in sorted(registry().values(), key=lambda s: (s.origin, s.name)):
        if spec.make_tool is None or spec.role in PIPELINE_ROLES:
            continue
        where = f"tool {spec.name} (from {spec.origin})"
        try:
            tool = spec.make_tool(_loader(spec, settings))
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, never raised
            notices.append(f"{where} is not offered to the chat: {one_line(exc)}")
            continue
        if not isinstance(tool, BaseTool):
            notices.append(
                f"{where} is not offered to the chat: make_tool gave {type(tool).__name__}, not a tool"
            )
        elif not _TOOL_NAME.match(tool.name) or tool.name in taken:
            why = "is taken" if tool.name in taken else "is not 1 to 64 letters, digits, '_' or '-'"
            notices.append(f"{where} is not offered to the chat: its name {tool.name!r} {why}")
        else:
            taken.add(tool.name)
            tools.append(tool)
    return tools, notices


def chat_extras(
    session: ChatSession, reserved: Collection[str], connections: McpConnections | None = None
) -> ChatExtras:
    """The plugins' tools and the MCP servers' tools for ``session``'s chat (see the module).
    ``connections``: already open ones to share (the LangGraph server keeps one per process), which
    :meth:`ChatExtras.close` leaves open; else the settings' servers are started here."""
    settings = session.settings
    tools, notices = plugin_tools(settings, reserved)
    owns = connections is None
    if connections is None and settings.mcp.servers:
        connections = McpConnections(settings.mcp.servers).start()
    if connections is not None:
        folder = session.workspace.tool_images
        folder.mkdir(parents=True, exist_ok=True)

        def show(path: str) -> None:  # the session's list is replaced after each step: look it up
            session.pending_images.append(path)

        taken = [*reserved, *(t.name for t in tools)]
        served, skipped = connections.tools(reserved=taken, image_dir=folder, on_image=show)
        tools += served
        notices += [*connections.problems, *skipped]
    return ChatExtras(tools, notices, connections, owns)


def notice_text(notices: Collection[str]) -> str:
    """The one message that tells the person what the chat could not offer."""
    return "Not every tool is available in this chat: " + "; ".join(notices) + "."
