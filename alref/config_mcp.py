"""The ``mcp`` setting: the MCP servers whose tools the chat agent offers (``alref.toml``)::

    [mcp.servers.files]                 # a server alref starts and talks to over stdio
    command = "npx"
    args = ["-y", "@modelcontextprotocol/server-filesystem", "/data/videos"]
    env = { LOG_LEVEL = "warning" }     # added to a small safe environment (PATH, HOME, ...)
    cwd = "/data"

    [mcp.servers.search]                # a server that is already running (streamable HTTP)
    url = "http://127.0.0.1:8931/mcp"
    headers = { Authorization = "Bearer ..." }
    tools = ["search"]                  # only these of its tools (default: all)

A server name is a word (letters, digits, ``_``, ``-``): its tools reach the model as ``<server>_<tool>``.
The values of ``env`` and ``headers`` are secrets: result.json shows them as ``set`` and traces never
show them. Declared here, used as the field ``mcp`` of :class:`alref.config.Settings`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class McpServer(BaseModel):
    """One MCP server: a ``command`` run over stdio, or the ``url`` of a streamable HTTP server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str | None = Field(None, description="the program that runs the server over stdio")
    args: list[str] = Field(default_factory=list, description="its arguments")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables it gets")
    cwd: Path | None = Field(None, description="the folder it runs in")
    url: str | None = Field(None, description="a streamable HTTP endpoint, e.g. http://127.0.0.1:8931/mcp")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers sent with each request")
    tools: list[str] | None = Field(None, description="offer only these of its tools (default: every one)")
    timeout: float = Field(60.0, gt=0, description="seconds one tool call may take")
    startup_timeout: float = Field(
        30.0, gt=0, description="seconds the server may take to start and list its tools"
    )

    @field_validator("cwd", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        return Path(value).expanduser() if isinstance(value, str | Path) and str(value) else value

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "give either command (a server run over stdio) or url (streamable HTTP), not both"
            )
        if self.command is not None and not self.command.strip():
            raise ValueError("command is empty")
        if self.url is not None:
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"url must start with http:// or https:// (got {self.url!r})")
            if self.args or self.env or self.cwd is not None:
                raise ValueError("args, env and cwd are for a command (stdio); a url server takes headers")
        if self.command is not None and self.headers:
            raise ValueError("headers are for a url server; a command (stdio) server takes env")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    @property
    def secrets(self) -> list[str]:
        """The values never to show: its environment variables and headers."""
        return [*self.env.values(), *self.headers.values()]


class McpSettings(BaseModel):
    """``[mcp.servers.NAME]`` tables: the MCP servers whose tools the chat agent offers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    servers: dict[str, McpServer] = Field(default_factory=dict)

    @field_validator("servers")
    @classmethod
    def _names(cls, servers: dict[str, McpServer]) -> dict[str, McpServer]:
        for name in servers:
            if not SERVER_NAME.match(name):
                raise ValueError(
                    f"server name {name!r}: use 1 to 32 letters, digits, '_' or '-' (its tools are named <server>_<tool>)"
                )
        return servers

    def public(self) -> dict[str, object]:
        """As written to result.json: the values of env and headers as ``set``."""
        servers = {}
        for name, server in self.servers.items():
            data = server.model_dump(mode="json", exclude_defaults=True)
            for key in ("env", "headers"):
                if key in data:
                    data[key] = dict.fromkeys(data[key], "set")
            servers[name] = data
        return {"servers": servers}
