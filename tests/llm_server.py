"""A scripted OpenAI-compatible HTTP server for tests: the real ``ChatOpenAI`` talks to it over HTTP.

Each POST to ``/v1/chat/completions`` takes the next scripted entry (FIFO, :meth:`push`), else the
``default``: a :class:`Reply` (a chat completion), a :class:`Status` (an HTTP error with a body and
headers), :class:`Malformed` (200 with a broken body) or :class:`Drop` (close without answering).
Delays wait in the server thread (the server being slow); :meth:`stop` cuts them short.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[dict] | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5
    delay: float = 0.0
    finish_reason: str | None = None  # default: "tool_calls" with tool calls, else "stop"


@dataclass
class Status:
    code: int
    body: dict | str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Malformed:
    body: bytes = b"{not json"


@dataclass
class Drop:
    pass


Entry = Reply | Status | Malformed | Drop


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ScriptedOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        pass

    def _send(
        self, code: int, body: bytes, headers: dict[str, str] | None = None, ctype: str = "application/json"
    ):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/").endswith("/models"):
            data = [{"id": model, "object": "model"} for model in self.server.owner.models]
            self._send(200, json.dumps({"object": "list", "data": data}).encode())
        else:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode())

    def do_POST(self) -> None:  # noqa: N802
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: dict[str, Any] = json.loads(raw)
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        body["_headers"] = {k.lower(): v for k, v in self.headers.items()}
        body["_path"] = self.path
        with owner.lock:
            owner.requests.append(body)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode())
            return
        entry = owner.next_entry(body)
        delay = getattr(entry, "delay", 0.0)
        if delay and owner.stopping.wait(delay):
            self.close_connection = True
            return
        if isinstance(entry, Drop):
            self.close_connection = True
            return
        if isinstance(entry, Malformed):
            self._send(200, entry.body)
        elif isinstance(entry, Status):
            payload = entry.body if isinstance(entry.body, str) else json.dumps(entry.body)
            ctype = "application/json" if isinstance(entry.body, dict) else "text/plain"
            self._send(entry.code, payload.encode(), entry.headers, ctype)
        else:
            self._send(200, json.dumps(completion(entry, body.get("model", "scripted"))).encode())


def completion(reply: Reply, model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object for ``reply``."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.text or not reply.tool_calls else None,
    }
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


class ScriptedOpenAIServer:
    """``with ScriptedOpenAIServer(Reply("hi")) as server: ChatOpenAI(base_url=server.base_url, ...)``."""

    def __init__(self, default: Entry | Callable[[dict], Any] | None = None) -> None:
        self.default = default
        self.models = ["scripted"]  # the ids GET /v1/models lists
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._queue: collections.deque[Any] = collections.deque()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def start(self) -> ScriptedOpenAIServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, *entries: Any) -> None:
        """Queue answers for the next requests (a ``str`` is shorthand for ``Reply(text)``)."""
        with self.lock:
            self._queue.extend(entries)

    def next_entry(self, body: dict[str, Any]) -> Entry:
        with self.lock:
            entry = self._queue.popleft() if self._queue else self.default
        if entry is None:
            return Status(
                500, {"error": {"message": "the scripted server has no answer left", "type": "server_error"}}
            )
        if callable(entry) and not isinstance(entry, Reply | Status | Malformed | Drop):
            entry = entry(body)
        return Reply(entry) if isinstance(entry, str) else entry

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if str(r.get("_path", "")).endswith("/chat/completions")]

    @staticmethod
    def closed_port_url() -> str:
        """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"


def tool_reply(call_id: str, name: str, args: dict[str, Any]) -> Reply:
    """A completion that calls the tool ``name`` with ``args``."""
    return Reply(tool_calls=[{"id": call_id, "type": "function",
                              "function": {"name": name, "arguments": json.dumps(args)}}])  # fmt: skip


def segment_then_list(box: list[float]) -> Callable[[dict], Reply]:
    """A chat model for two turns: the first segments ``box`` on frame 0 as "red square", the second
    lists the objects; after a tool result it says "Done."."""
    turns = {"n": 0}

    def answer(body: dict[str, Any]) -> Reply:
        if body["messages"][-1]["role"] == "tool":
            return Reply("Done.")
        turns["n"] += 1
        if turns["n"] == 1:
            return tool_reply("call1", "segment_box", {"frame": 0, "box": box, "name": "red square"})
        return tool_reply(f"call{turns['n']}", "list_objects", {})

    return answer
