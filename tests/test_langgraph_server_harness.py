"""The real ``langgraph dev`` server (langgraph-cli[inmem]) serves tests/lg_harness/ graphs on 127.0.0.1,
driven with the langgraph-sdk sync client: assistants, runtime context, node errors, thread state.

What this pins down about langgraph-api 0.16 / langgraph-sdk 0.4 (see tests/langgraph_server.py):
- ``runs.wait(..., context={...})`` arrives in the node as ``runtime.context``, built into the graph's
  ``context_schema`` dataclass (unknown keys dropped, missing keys take the dataclass defaults); the
  keys are also copied into ``config["configurable"]``; ``config={"configurable": {...}}`` alone
  fills ``runtime.context`` too.
- A node's exception makes ``runs.wait`` raise a bare ``Exception("<ClassName>: <message>")``
  (``raise_error=False``: returns ``{"__error__": {"error", "message"}}``); the message is kept only
  for builtin ValueError / TypeError / KeyError / AttributeError / RuntimeError / TimeoutError (and
  subclasses) — any other class reads "An internal error occurred" (the traceback is in the log).
- Blocking calls in async nodes fail with ``BlockingError`` unless ``--allow-blocking``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from langgraph_server import LangGraphDevServer, rewrite_config, skip_without_langgraph_cli  # noqa: E402

skip_without_langgraph_cli()

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).parent / "lg_harness" / "langgraph.json"
SETTINGS, CHAT, BLOCKING = "harness_settings", "harness_chat", "harness_blocking"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with LangGraphDevServer(CONFIG, workdir=tmp_path_factory.mktemp("langgraph-dev")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: LangGraphDevServer):
    return server.client(timeout=30)


@pytest.fixture(autouse=True)
def _server_log_on_failure(request: pytest.FixtureRequest):
    """When a test that used the server fails, print what the server logged meanwhile."""
    if "server" not in request.fixturenames:
        yield
        return
    srv: LangGraphDevServer = request.getfixturevalue("server")
    mark, failed = srv.log_size(), request.session.testsfailed
    yield
    if request.session.testsfailed > failed:  # the call phase has been reported by now
        # captured in teardown, shown with the failure as "Captured stdout teardown"
        print(f"--- langgraph dev log during {request.node.name} ---\n{srv.log_tail(120, since=mark)}")


def test_rewrite_config_resolves_paths_against_the_config_folder():
    config = {
        "dependencies": [".", "./alref", "langchain-openai"],
        "graphs": {
            "segment": "./alref/app/graphs.py:segment",
            "chat": {"path": "./alref/app/graphs.py:chat", "description": "x"},
            "by_module": "alref.app.graphs:segment",
            "bare": "alref/app/graphs.py:segment",
            "absolute": "/srv/graphs.py:g",
        },
        "env": ".env",
    }
    out = rewrite_config(config, ROOT)
    assert out["dependencies"] == [str(ROOT), str(ROOT / "alref"), "langchain-openai"]
    assert out["graphs"]["segment"] == f"{ROOT}/alref/app/graphs.py:segment"
    assert out["graphs"]["chat"] == {"path": f"{ROOT}/alref/app/graphs.py:chat", "description": "x"}
    assert out["graphs"]["by_module"] == "alref.app.graphs:segment"
    assert out["graphs"]["bare"] == f"{ROOT}/alref/app/graphs.py:segment"
    assert out["graphs"]["absolute"] == "/srv/graphs.py:g"
    assert out["env"] == str(ROOT / ".env")
    assert config["graphs"]["segment"] == "./alref/app/graphs.py:segment"  # the input is not touched


def test_assistants_list_every_graph(client):
    graph_ids = {a["graph_id"] for a in client.assistants.search(limit=100)}
    assert {SETTINGS, CHAT, BLOCKING} <= graph_ids
    # the server exposes the context_schema as JSON schema (schemas want the assistant's UUID)
    (assistant,) = client.assistants.search(graph_id=SETTINGS)
    schemas = client.assistants.get_schemas(assistant["assistant_id"])
    assert set(schemas["context_schema"]["properties"]) == {"models", "llm_base_url"}


def test_run_gets_context_and_writes_the_file(server, client, tmp_path):
    out = tmp_path / "sub" / "out.json"
    context = {"models": "smoke", "llm_base_url": "http://127.0.0.1:9/v1"}
    state = client.runs.wait(None, SETTINGS, input={"out_path": str(out)}, context=context)

    result = state["result"]  # runs.wait returns the final state values
    assert result["context_type"] == "HarnessContext"  # a dict context is built into the dataclass
    assert result["context"] == context
    assert {"models", "llm_base_url"} <= set(result["configurable_keys"])  # also copied there
    assert json.loads(out.read_text()) == result
    # the graph runs in the server process, in its work folder, with this repository's alref
    assert result["pid"] == server.proc.pid
    assert Path(result["cwd"]) == server.workdir
    assert Path(result["alref_file"]).is_relative_to(ROOT)


def test_context_defaults_unknown_keys_and_configurable(client, tmp_path):
    out = str(tmp_path / "out.json")
    plain = client.runs.wait(None, SETTINGS, input={"out_path": out, "sleep": 0.01})[
        "result"
    ]  # sync sleep: ok
    assert plain["context"] == {"models": "default", "llm_base_url": None}

    extra = client.runs.wait(None, SETTINGS, input={"out_path": out}, context={"models": "m", "bogus": 1})
    assert extra["result"]["context"] == {"models": "m", "llm_base_url": None}  # dropped, no error

    legacy = client.runs.wait(
        None, SETTINGS, input={"out_path": out}, config={"configurable": {"models": "c"}}
    )
    assert legacy["result"]["context"] == {"models": "c", "llm_base_url": None}


def test_node_error_reaches_the_client_and_the_server_keeps_serving(server, client, tmp_path):
    with pytest.raises(Exception, match=r"^ValueError: boom$") as info:
        client.runs.wait(None, SETTINGS, input={"out_path": "unused", "fail": "boom"})
    assert type(info.value) is Exception  # not an SDK error class: the HTTP call itself succeeded

    answer = client.runs.wait(None, SETTINGS, input={"out_path": "unused", "fail": "boom"}, raise_error=False)
    assert answer == {"__error__": {"error": "ValueError", "message": "boom"}}

    # a non-builtin exception class: the class name comes through, the message only in the log
    with pytest.raises(Exception, match=r"^HarnessError: An internal error occurred$"):
        client.runs.wait(None, SETTINGS, input={"out_path": "unused", "fail": "secret", "fail_custom": True})

    # on a thread, the run and the thread are left with status "error"
    thread_id = client.threads.create()["thread_id"]
    with pytest.raises(Exception, match="ValueError: on a thread"):
        client.runs.wait(thread_id, SETTINGS, input={"out_path": "unused", "fail": "on a thread"})
    (run,) = client.runs.list(thread_id)
    assert run["status"] == "error"
    thread = client.threads.get(thread_id)
    assert thread["status"] == "error"
    assert thread["error"] == {"error": "ValueError", "message": "on a thread"}
    (task,) = client.threads.get_state(thread_id)["tasks"]
    assert task["name"] == "work" and task["error"] == "ValueError('on a thread')"

    assert server.running
    out = tmp_path / "after.json"
    assert client.runs.wait(None, SETTINGS, input={"out_path": str(out)})["result"]["context_type"]
    assert out.exists()


def test_blocking_call_in_async_node_is_refused(server, client):
    with pytest.raises(Exception, match=r"^BlockingError: An internal error occurred$"):
        client.runs.wait(None, BLOCKING, input={})
    assert server.running


def test_chat_thread_keeps_its_messages(client):
    thread_id = client.threads.create()["thread_id"]
    first = client.runs.wait(thread_id, CHAT, input={"messages": [{"role": "user", "content": "hello"}]})
    assert [m["content"] for m in first["messages"]] == ["hello", "turn 1: hello"]
    second = client.runs.wait(thread_id, CHAT, input={"messages": [{"role": "user", "content": "again"}]})
    assert [m["content"] for m in second["messages"]] == ["hello", "turn 1: hello", "again", "turn 2: again"]
    assert [m["type"] for m in second["messages"]] == ["human", "ai", "human", "ai"]
    state = client.threads.get_state(thread_id)
    assert len(state["values"]["messages"]) == 4 and state["next"] == []


def test_server_state_lives_in_its_work_folder(server):
    assert server.state_dir.is_dir()  # .langgraph_api/ (pickled checkpoints, ops, store)
    assert server.state_dir.parent == server.workdir != ROOT
    assert json.loads((server.workdir / "langgraph.json").read_text())["dependencies"] == [str(CONFIG.parent)]


def test_restart_on_the_same_folder_keeps_threads_and_allow_blocking(tmp_path):
    workdir = tmp_path / "server"
    with LangGraphDevServer(CONFIG, workdir=workdir, allow_blocking=True) as srv:
        client = srv.client(timeout=30)
        assert client.runs.wait(None, BLOCKING, input={}) == {"done": True}
        thread_id = client.threads.create()["thread_id"]
        client.runs.wait(thread_id, CHAT, input={"messages": [{"role": "user", "content": "hello"}]})
    # a graceful stop (SIGTERM) flushes .langgraph_api/; a new server on that folder has the thread
    with LangGraphDevServer(CONFIG, workdir=workdir) as srv:
        state = srv.client(timeout=30).threads.get_state(thread_id)
        assert [m["content"] for m in state["values"]["messages"]] == ["hello", "turn 1: hello"]
