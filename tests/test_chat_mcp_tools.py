"""The chat's tools from MCP servers (the ``mcp`` setting in alref.toml) and from plugins: a real MCP
server (tests/mcp_echo_server.py, over stdio and over streamable HTTP on 127.0.0.1) is started by the
SDK's client; a scripted model calls its tools; the results, errors and images reach the model's next
step; a server that does not start is told once and the chat goes on; closing the chat stops the
server. A plugin tool of a role the pipeline does not use is offered to the chat."""

from __future__ import annotations

import importlib
import json
import socket
import sys
import threading
from pathlib import Path

import pytest
import synth
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from scripted_llm import ScriptedChatModel

pytest.importorskip("mcp.server.mcpserver", reason="the mcp extra is not installed")

from alref.agent.chat.agent import NOTICE, Chat, chat_store  # noqa: E402
from alref.agent.chat.session import ChatSession  # noqa: E402
from alref.config import load_settings  # noqa: E402
from alref.errors import ConfigError  # noqa: E402
from alref.tools.registry import registry  # noqa: E402

SERVER = Path(__file__).parent / "mcp_echo_server.py"
N = 10


def call(tool: str, _id: str, **args) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": tool, "args": args, "id": _id}])


def toml_value(value) -> str:
    return json.dumps(value)  # a JSON string or list of strings is valid TOML


def write_config(path: Path, servers: dict[str, dict]) -> Path:
    lines = []
    for name, server in servers.items():
        lines.append(f"[mcp.servers.{name}]")
        for key, value in server.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def echo(*args: str, **extra) -> dict:
    return {"command": sys.executable, "args": [str(SERVER), *args], **extra}


@pytest.fixture
def video(tmp_path):
    return synth.write_shapes_video(tmp_path / "v.mp4", num_frames=N, width=96, height=72, fps=10)


@pytest.fixture
def chat_with(tmp_path, video, monkeypatch):
    """``chat_with(servers, script)``: a Chat over the smoke models whose alref.toml names ``servers``."""
    opened = []

    def make(servers: dict[str, dict], script: list):
        config = write_config(tmp_path / "alref.toml", servers)
        monkeypatch.setenv("ALREF_CONFIG", str(config))
        settings = load_settings(models="smoke", clip_frames=5)
        session = ChatSession(video, tmp_path / "chat", settings)
        store = chat_store(tmp_path / "chats.sqlite")
        model = ScriptedChatModel(script)
        chat = Chat(session, model, store.__enter__(), max_steps=6)
        opened.append((chat, store))
        return chat, model

    yield make
    for chat, store in opened:
        chat.close()
        store.__exit__(None, None, None)


def tool_names(model_call: dict) -> set[str]:
    return {t["function"]["name"] for t in model_call["kwargs"].get("tools", [])}


def events(tmp_path: Path) -> list[dict]:
    lines = (tmp_path / "chat" / "trace" / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_mcp_tools_answer_fail_show_images_and_stop_with_the_chat(tmp_path, chat_with):
    pid_file = tmp_path / "echo.pid"

    def sees_the_count(messages):
        results = [m for m in messages if isinstance(m, ToolMessage)]
        assert results[-1].content == "'banana' has 6 letters" and results[-1].status == "success"
        return call("echo_red_square", "c2")

    def sees_the_image(messages):
        shown = messages[-1]
        assert isinstance(shown, HumanMessage) and isinstance(shown.content, list)
        assert [p["type"] for p in shown.content] == ["text", "image_url"]  # the tool's image, on this step
        assert shown.content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        return AIMessage(content="banana has 6 letters; I saw a red square.")

    def sees_the_error(messages):
        failed = [m for m in messages if isinstance(m, ToolMessage)][-1]
        assert failed.status == "error" and "failed on purpose: testing" in failed.content
        return call("echo_noisy", "c4")

    script = [call("echo_count_letters", "c1", word="banana"), sees_the_count, sees_the_image,
              call("echo_fail", "c3", why="testing"), sees_the_error, AIMessage(content="It failed, then was noisy.")]  # fmt: skip
    chat, model = chat_with({"echo": echo(env={"ECHO_PID_FILE": str(pid_file)})}, script)
    assert {"echo_count_letters", "echo_fail", "echo_red_square", "echo_noisy"} <= {
        t.name for t in chat.extras.tools
    }

    first = chat.ask("how many letters has banana? then show me the square")
    assert [c["tool"] for c in first["calls"]] == ["echo_count_letters", "echo_red_square"]
    assert first["calls"][0]["result"] == "'banana' has 6 letters" and not first["calls"][0]["error"]
    assert first["answer"] == "banana has 6 letters; I saw a red square." and first["notices"] == []
    assert "echo_count_letters" in tool_names(model.calls[0]) and "select_referent" in tool_names(
        model.calls[0]
    )

    second = chat.ask("now fail, then be noisy")  # a tool error does not end the chat
    assert [(c["tool"], c["error"]) for c in second["calls"]] == [("echo_fail", True), ("echo_noisy", False)]
    noisy = second["calls"][1]["result"]
    assert noisy.startswith("redx") and "\x1b" not in noisy and "\x07" not in noisy  # control characters go
    assert "(cut: the answer had 20003 characters)" in noisy and len(noisy) < 8100
    assert second["status"] == "ok" and second["answer"] == "It failed, then was noisy."
    assert model.remaining == 0

    # traced as every chat tool is: in the model's tool calls and the turn's calls
    trace = events(tmp_path)
    start = next(e for e in trace if e["kind"] == "chat_start")
    assert start["extra_tools"]["mcp"]["echo"]["status"] == "ok"
    assert "count_letters" in start["extra_tools"]["mcp"]["echo"]["tools"]
    asked = [c["name"] for e in trace if e["kind"] == "llm_call" for c in e.get("tool_calls", [])]
    assert asked == ["echo_count_letters", "echo_red_square", "echo_fail", "echo_noisy"]
    turns = [e for e in trace if e["kind"] == "chat_turn"]
    assert turns[1]["calls"][0]["error"] and "failed on purpose" in turns[1]["calls"][0]["result"]

    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}").exists()
    chat.close()  # the server stops with the chat (and is reaped: no zombie)
    assert not Path(f"/proc/{pid}").exists()
    chat.close()  # twice is fine


def test_a_server_that_does_not_start_is_told_once_and_the_chat_goes_on(tmp_path, chat_with):
    def sees_no_notice(messages):
        assert not any(getattr(m, "name", None) == NOTICE for m in messages)
        return call("fine_count_letters", "c1", word="abc")

    script = [sees_no_notice, AIMessage(content="3 letters."), AIMessage(content="Still here.")]
    pid_file = tmp_path / "silent.pid"
    silent = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    servers = {
        "missing": {"command": "alref-no-such-command-xyz"},
        "crashes": echo("--crash"),
        "fine": echo(),
        "silent": {"command": sys.executable, "args": ["-c", silent], "startup_timeout": 2},
    }
    chat, model = chat_with(servers, script)
    if pid_file.exists():  # (else it was stopped before it got that far)
        assert not Path(f"/proc/{int(pid_file.read_text())}").exists()  # one that never answers is stopped
    assert {t.name for t in chat.extras.tools} >= {"fine_count_letters"}
    assert not any(t.name.startswith(("missing_", "crashes_")) for t in chat.extras.tools)

    first = chat.ask("count abc")
    assert first["status"] == "ok" and first["calls"][0]["result"] == "'abc' has 3 letters"
    notices = first["notices"]
    assert len(notices) == 3
    assert (
        "'silent' did not start: no answer within 2 s (a slow one needs a longer startup_timeout)"
        in " ".join(notices)
    )
    missing = next(n for n in notices if "'missing'" in n)
    assert "did not start" in missing and "alref-no-such-command-xyz" in missing
    crashed = next(n for n in notices if "'crashes'" in n)
    assert "its last message: echo server: cannot open the database" in crashed
    assert first["answer"].startswith("Not every tool is available in this chat: ")
    assert first["answer"].endswith("\n3 letters.")

    second = chat.ask("still there?")  # told once
    assert second["notices"] == [] and second["answer"] == "Still here."
    state = chat.graph.get_state(chat.config).values["messages"]
    kept = [m for m in state if getattr(m, "name", None) == NOTICE]
    assert len(kept) == 1 and kept[0].additional_kwargs["alref_notice"]
    start = next(e for e in events(tmp_path) if e["kind"] == "chat_start")
    assert start["extra_tools"]["mcp"]["missing"]["status"] == "failed"


def test_tools_list_shows_the_mcp_servers_tools(tmp_path, monkeypatch):
    from alref.tools.cli import mcp_rows

    config = write_config(tmp_path / "alref.toml", {"echo": echo(), "gone": {"command": "alref-no-such-xyz"}})
    monkeypatch.setenv("ALREF_CONFIG", str(config))
    rows = {row["name"]: row for row in mcp_rows()}
    assert rows["echo_count_letters"]["args"] == ["word"] and rows["echo_count_letters"]["status"] == "ok"
    assert rows["echo_count_letters"]["origin"] == "mcp server echo (stdio)"
    assert rows["gone"]["status"].startswith("broken: MCP server 'gone' did not start: FileNotFoundError")


class _HttpServer:
    """The echo server over streamable HTTP on 127.0.0.1, in this process: its socket is bound and
    listening before the client connects, so nothing waits for it to come up."""

    def __init__(self) -> None:
        import uvicorn
        from mcp_echo_server import build

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/mcp"
        app = build().streamable_http_app(host="127.0.0.1")
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def test_a_streamable_http_server(tmp_path, chat_with):
    http = _HttpServer()
    try:
        script = [call("web_count_letters", "c1", word="hello"), AIMessage(content="5.")]
        chat, model = chat_with({"web": {"url": http.url, "headers": {"X-Test": "secret-token-1"}}}, script)
        report = chat.ask("count hello")
        assert report["calls"][0]["result"] == "'hello' has 5 letters" and report["answer"] == "5."
        chat.close()
        trace = (tmp_path / "chat" / "trace" / "events.jsonl").read_text()
        assert "secret-token-1" not in trace
    finally:
        http.stop()


def test_mcp_settings_are_checked_and_their_secrets_hidden(tmp_path, monkeypatch):
    config = write_config(tmp_path / "alref.toml", {"a": {"command": "x", "url": "http://127.0.0.1:1/mcp"}})
    monkeypatch.setenv("ALREF_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"mcp.servers.a: .*give either command .* or url"):
        load_settings()
    write_config(config, {"a": {"url": "ws://127.0.0.1:1/mcp"}})
    with pytest.raises(ConfigError, match="url must start with http:// or https://"):
        load_settings()
    config.write_text('[mcp.servers."two words"]\ncommand = "x"\n')
    with pytest.raises(ConfigError, match="server name 'two words': use 1 to 32 letters"):
        load_settings()
    write_config(config, {"a": {"command": "x", "env": {"TOKEN": "abcd1234"}},
                          "b": {"url": "http://h/mcp", "headers": {"Authorization": "Bearer xyz987"}}})  # fmt: skip
    settings = load_settings()
    public = json.dumps(settings.public_dict())
    assert "abcd1234" not in public and "xyz987" not in public and '"TOKEN": "set"' in public
    assert "mcp" not in settings.identity_dict()  # which tools the chat has changes no run's output


def test_the_langgraph_server_refuses_mcp_in_a_run_context():
    from alref.app.graphs import RunFailed, settings_from_context

    with pytest.raises(RunFailed, match="context key 'mcp' is not accepted: MCP servers .* alref.toml"):
        settings_from_context({"mcp": {"servers": {"x": {"command": "rm"}}}})


def test_the_langgraph_chat_graph_offers_mcp_tools_and_tells_a_failed_server_once(
    tmp_path, video, monkeypatch, llm_server
):
    from llm_server import Reply, tool_reply

    from alref.app import graphs

    config = write_config(
        tmp_path / "alref.toml", {"echo": echo(), "missing": {"command": "alref-no-such-xyz"}}
    )
    monkeypatch.setenv("ALREF_CONFIG", str(config))
    llm_server.push(
        tool_reply("c1", "echo_count_letters", {"word": "kiwi"}), Reply("4 letters."), Reply("Yes.")
    )
    context = {"models": "smoke", "llm": "m", "llm_base_url": llm_server.base_url, "video": str(video),
               "out": str(tmp_path / "c")}  # fmt: skip
    thread = {"configurable": {"thread_id": "mcp-thread"}}
    key = load_settings().mcp.model_dump_json()
    try:
        first = graphs.chat_graph.invoke({"messages": [HumanMessage("count kiwi")]}, thread, context=context)
        tools = {t["function"]["name"] for t in llm_server.chat_requests[0]["tools"]}
        assert "echo_count_letters" in tools and not any(t.startswith("missing_") for t in tools)
        notices = [m for m in first["messages"] if getattr(m, "name", None) == NOTICE]
        assert len(notices) == 1 and "'missing' did not start" in notices[0].content
        result = next(m for m in first["messages"] if isinstance(m, ToolMessage))
        assert result.content == "'kiwi' has 4 letters"
        sent = llm_server.chat_requests[1]["messages"]
        assert not any("did not start" in str(m.get("content")) for m in sent)  # the notice is the person's
        second = graphs.chat_graph.invoke(
            {"messages": [*first["messages"], HumanMessage("still there?")]}, thread, context=context
        )
        assert sum(getattr(m, "name", None) == NOTICE for m in second["messages"]) == 1  # told once
        assert second["messages"][-1].content == "Yes."
    finally:
        graphs._mcp.pop(key).close()
        for held in [k for k in graphs._sessions if k[0] == "mcp-thread"]:
            session = graphs._sessions.pop(held)
            graphs._extras.pop(id(session), None)
            session.close()


PLUGIN = """
from langchain_core.tools import StructuredTool
from alref.tools.registry import ToolSpec

LOADS = []


class Counter:
    def count(self, text):
        return len(text.split())


def load(source, device):
    LOADS.append((source, device))
    return Counter()


def make_tool(get):
    def count_words(text: str) -> str:
        return f"{get().count(text)} words"

    return StructuredTool.from_function(count_words, name="count_words", description="Count the words of a text.")


def named(name):
    def make(get):
        def run(text: str) -> str:
            return text

        return StructuredTool.from_function(run, name=name, description="a tool")

    return make


def refuse(get):
    raise RuntimeError("no tool today")


specs = [ToolSpec("word-counter", "text_stats", "counts words", load, make_tool=make_tool),
         ToolSpec("colour-grounder", "grounding", "a grounding plugin", load, make_tool=named("colour_boxes")),
         ToolSpec("refuser", "text_stats", "its make_tool fails", load, make_tool=refuse),
         ToolSpec("undoer", "misc", "takes a name the chat uses", load, make_tool=named("undo"))]
"""


@pytest.fixture
def text_plugin(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "alref_text_plugin.py").write_text(PLUGIN)
    info = site / "alref_text_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alref-text-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[alref.tools]\ntext = alref_text_plugin:specs\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    registry(refresh=True)
    yield importlib.import_module("alref_text_plugin")
    sys.path.remove(str(site))
    sys.modules.pop("alref_text_plugin", None)
    importlib.invalidate_caches()
    registry(refresh=True)


def test_a_plugin_tool_of_another_role_is_offered_to_the_chat(chat_with, text_plugin):
    def sees_the_count(messages):
        assert [m for m in messages if isinstance(m, ToolMessage)][-1].content == "3 words"
        return AIMessage(content="Three words.")

    chat, model = chat_with({}, [call("count_words", "c1", text="the dog barks"), sees_the_count])
    assert text_plugin.LOADS == []  # loaded on first use
    report = chat.ask("count the words of: the dog barks")
    assert report["calls"][0]["result"] == "3 words" and report["answer"].endswith("Three words.")
    assert text_plugin.LOADS == [(None, "cpu")]
    offered = tool_names(model.calls[0])
    assert "count_words" in offered and "colour_boxes" not in offered  # grounding plugins go by --grounding
    notices = report["notices"]
    assert any(
        "tool refuser (from alref-text-plugin)" in n and "RuntimeError: no tool today" in n for n in notices
    )
    assert any("tool undoer" in n and "'undo' is taken" in n for n in notices)
