"""A tiny MCP server for the chat's MCP tests, with the official SDK's MCPServer.

    python tests/mcp_echo_server.py            # over stdio (the chat starts it)
    python tests/mcp_echo_server.py --crash    # writes one line to stderr and exits before serving

With ``ECHO_PID_FILE`` in its environment it writes its process id there (to check that it was stopped).

Tools: ``count_letters(word)``, ``fail(why)`` (always an error), ``red_square()`` (an image), ``noisy()``
(a long answer with control characters). :func:`build` gives the server to serve over HTTP in-process.
"""

from __future__ import annotations

import base64
import io
import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ImageContent, TextContent


def build() -> MCPServer:
    server = MCPServer("alref-test-echo")

    @server.tool(description="Count the letters of a word; returns the count and the word.")
    def count_letters(word: str) -> str:
        return f"{word!r} has {sum(c.isalpha() for c in word)} letters"

    @server.tool(description="Always fails, with the reason given.")
    def fail(why: str = "no reason") -> str:
        raise ToolError(f"failed on purpose: {why}")

    @server.tool(description="A 32x24 picture of a red square on white.")
    def red_square() -> list[ImageContent | TextContent]:
        from PIL import Image

        image = Image.new("RGB", (32, 24), "white")
        image.paste((255, 0, 0), (8, 4, 24, 20))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = base64.b64encode(buffer.getvalue()).decode()
        return [TextContent(type="text", text="a red square"), ImageContent(type="image", data=data, mime_type="image/png")]  # fmt: skip

    @server.tool(description="A long answer with terminal escape sequences.")
    def noisy() -> str:
        return "\x1b[31mred\x1b[0m\x07" + "x" * 20000

    return server


if __name__ == "__main__":
    if "--crash" in sys.argv:
        print("echo server: cannot open the database", file=sys.stderr)
        sys.exit(3)
    if os.environ.get("ECHO_PID_FILE"):
        with open(os.environ["ECHO_PID_FILE"], "w") as handle:
            handle.write(str(os.getpid()))
    build().run("stdio")
