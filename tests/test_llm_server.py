"""The scripted OpenAI-compatible test server itself (so other tests can trust it)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from llm_server import Drop, Malformed, Reply, ScriptedOpenAIServer, Status


def post(url: str, body: dict, timeout: float = 5) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer k"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_models_and_a_scripted_completion(llm_server):
    with urllib.request.urlopen(f"{llm_server.base_url}/models", timeout=5) as response:
        assert json.load(response)["data"] == [{"id": "scripted", "object": "model"}]
    llm_server.push(Reply("hello", prompt_tokens=7, completion_tokens=2), "short form")
    code, _, raw = post(llm_server.base_url, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    answer = json.loads(raw)
    assert code == 200 and answer["object"] == "chat.completion" and answer["model"] == "m"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert (
        json.loads(post(llm_server.base_url, {"model": "m"})[2])["choices"][0]["message"]["content"]
        == "short form"
    )
    (first, second) = llm_server.chat_requests
    assert first["messages"][0]["content"] == "hi" and first["_headers"]["authorization"] == "Bearer k"


def test_tool_calls_statuses_and_malformed_bodies(llm_server):
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    llm_server.push(
        Reply(tool_calls=[call]),
        Status(429, {"error": {"message": "slow"}}, {"Retry-After": "3"}),
        Malformed(),
    )
    answer = json.loads(post(llm_server.base_url, {})[2])
    assert answer["choices"][0]["message"]["tool_calls"] == [call]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    code, headers, raw = post(llm_server.base_url, {})
    assert code == 429 and headers["Retry-After"] == "3" and json.loads(raw)["error"]["message"] == "slow"
    assert post(llm_server.base_url, {})[2] == b"{not json"
    code, _, raw = post(llm_server.base_url, {})  # nothing scripted and no default: 500
    assert code == 500 and b"no answer left" in raw


def test_default_callable_and_drop(llm_server):
    llm_server.default = lambda body: Reply(f"echo {body['messages'][0]['content']}")
    assert b"echo ping" in post(llm_server.base_url, {"messages": [{"content": "ping"}]})[2]
    llm_server.push(Drop())
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        post(llm_server.base_url, {})


def test_stop_cuts_a_delay_short():
    arrived = threading.Event()

    def slow(body: dict) -> Reply:
        arrived.set()
        return Reply("late", delay=30)

    server = ScriptedOpenAIServer(slow).start()
    started = time.monotonic()
    thread = threading.Thread(target=_swallow, args=(server.base_url,), daemon=True)
    thread.start()
    assert arrived.wait(5)
    server.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 5


def _swallow(url: str) -> None:
    try:
        post(url, {}, timeout=10)
    except OSError:
        pass


def test_closed_port_refuses():
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{ScriptedOpenAIServer.closed_port_url()}/models", timeout=5)
