"""`alref mcp`: the SDK's own MCP client starts the server as a subprocess, over stdio and over streamable
HTTP on 127.0.0.1, and uses every kind of tool: segment a tiny synthetic video with the smoke models
(masks on disk, progress notifications), read the run, get a frame as image content, the trace, bad
input (a tool error of one sentence, and the server still answers), and a long call cancelled after its
first progress notification (the server still answers, the run stops unfinished, the next run goes)."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import synth

pytest.importorskip("mcp.server.mcpserver", reason="the mcp extra is not installed")

import anyio  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from PIL import Image  # noqa: E402

SERVER = [sys.executable, "-m", "alref.cli", "mcp", "--models", "smoke", "--no-overlay"]
TOOLS = {
    "segment_video",
    "segment_by_sound",
    "answer_questions",
    "refine_object",
    "list_runs",
    "read_run",
    "show_frame",
    "run_trace",
}
KEY = "sk-test-NEVER-SHOWN-1234"  # an API key the server has; it must appear nowhere


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """10 frames, 64x48: a run of the smoke models takes a second once they are loaded."""
    return synth.write_shapes_video(
        tmp_path_factory.mktemp("mcp") / "tiny.mp4", num_frames=10, width=64, height=48
    )


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    return synth.write_shapes_video(
        tmp_path_factory.mktemp("mcp") / "long.mp4", num_frames=240, width=64, height=48
    )


def _env() -> dict[str, str]:
    # no LLM is configured (the key alone would turn the agent on): --no-llm keeps the baseline
    return dict(os.environ, ALREF_LLM_API_KEY=KEY, ALREF_NO_LLM="1", PYTHONUNBUFFERED="1")


def _text(result) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def _segment_and_read(client: Client, video: Path, out: str) -> dict:
    """Segment, read the run back, look at a frame and the trace; returns the summary."""
    tools = await client.list_tools()
    assert {t.name for t in tools.tools} >= TOOLS
    segment = next(t for t in tools.tools if t.name == "segment_video")
    assert set(segment.input_schema["required"]) == {"video", "references"}
    assert "sentence" in segment.input_schema["properties"]["references"]["description"]

    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    result = await client.call_tool("segment_video", {"video": str(video), "references": ["the red square"],
                                                      "out": out}, progress_callback=on_progress)  # fmt: skip
    assert not result.is_error, _text(result)
    summary = result.structured_content
    assert summary["status"] == "ok" and summary["smoke_note"]
    assert [r["text"] for r in summary["references"]] == ["the red square"]
    files = summary["files"]
    assert files["mask_files"] == 10 and Path(files["first_mask"]).is_file()
    assert len(list(Path(files["masks"]).glob("*.png"))) == 10 and Path(files["masks_json"]).is_file()
    assert Path(summary["references"][0]["mask_folder"]) == Path(files["masks"])
    # progress: notifications came, they only grow, and they name the stages
    assert progress and [v for v, _ in progress] == sorted(v for v, _ in progress)
    assert any((m or "").startswith("propagation") for _, m in progress)

    read = await client.call_tool("read_run", {"run": summary["run"]})
    assert not read.is_error and read.structured_content["references"] == summary["references"]
    frame = await client.call_tool("show_frame", {"run": summary["run"], "frame": 4})
    images = [c for c in frame.content if c.type == "image"]
    assert not frame.is_error and len(images) == 1 and images[0].mime_type == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(images[0].data))).size == (64, 48)
    trace = await client.call_tool("run_trace", {"run": summary["run"]})
    assert "reference 1" in _text(trace) and "the red square" in _text(trace)
    return summary


async def _bad_input(client: Client, video: Path, tmp: Path) -> None:
    """Each is one sentence of alref's, marked as an error, and the next call is answered."""
    cases = [
        ("segment_video", {"video": str(tmp / "missing.mp4"), "references": ["x"]}, "no such file"),
        ("segment_video", {"video": str(video), "references": ["   "]}, "non-empty sentence"),
        ("read_run", {"run": str(tmp / "no-run")}, "no alref run"),
        ("show_frame", {"run": str(tmp / "no-run"), "frame": 0}, "no alref run"),
    ]
    for tool, args, expected in cases:
        result = await client.call_tool(tool, args)
        assert result.is_error, (tool, args)
        text = _text(result)
        assert expected in text and "\n" not in text and "Traceback" not in text and KEY not in text
    runs = await client.call_tool("list_runs", {})
    assert not runs.is_error


def test_stdio(tiny, tmp_path):
    """`alref mcp` over stdio: the tools, a run, bad input, and nothing but protocol on stdout."""
    stderr = tmp_path / "stderr.txt"
    stray: list[Exception] = []

    async def on_message(message) -> None:
        if isinstance(message, Exception):  # a line on stdout that is not JSON-RPC
            stray.append(message)

    async def scenario() -> None:
        params = StdioServerParameters(command=SERVER[0], args=[*SERVER[1:], "--out", str(tmp_path / "runs")],
                                       env=_env(), cwd=str(tmp_path))  # fmt: skip
        with open(stderr, "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), message_handler=on_message) as client:
                summary = await _segment_and_read(client, tiny, "first")
                assert summary["run"] == str((tmp_path / "runs" / "first").resolve())
                await _bad_input(client, tiny, tmp_path)
                listed = await client.call_tool("list_runs", {})
                assert [r["run"] for r in listed.structured_content["runs"]] == [summary["run"]]

    anyio.run(scenario)
    assert stray == []
    log = stderr.read_text()
    assert KEY not in log and "Traceback" not in log
    assert KEY not in "".join(p.read_text(errors="replace") for p in (tmp_path / "runs").rglob("*.json*"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_cancel_and_go_on(tiny, long_video, tmp_path):
    """`alref mcp --http` on 127.0.0.1: a long call cancelled after its first progress notification stops
    (the run is left unfinished), the server answers, and the next run goes."""
    port = _free_port()
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as errlog:
        proc = subprocess.Popen([*SERVER, "--http", "--port", str(port), "--out", str(tmp_path / "runs")],
                                env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=errlog)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, stderr.read_text()
                time.sleep(0.1)

        async def scenario() -> None:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                first = anyio.Event()
                seen: list[str | None] = []

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    seen.append(message)
                    if (message or "").startswith(("decode", "detection", "propagation")):
                        first.set()

                async def long_call() -> None:
                    await client.call_tool("segment_video", {"video": str(long_video), "references": ["the red square"],
                                                             "out": "long"}, progress_callback=on_progress)  # fmt: skip
                    raise AssertionError("the cancelled call finished")

                with anyio.fail_after(120):
                    async with anyio.create_task_group() as group:
                        group.start_soon(long_call)
                        await first.wait()
                        group.cancel_scope.cancel()
                runs = await client.call_tool("list_runs", {})  # answered at once; the run stopped unfinished
                [(name, status)] = [
                    (Path(r["run"]).name, r["status"]) for r in runs.structured_content["runs"]
                ]
                assert name == "long" and status != "ok"
                # the cancelled run has stopped: the next one gets the models and finishes
                summary = await _segment_and_read(client, tiny, "after")
                assert Path(summary["run"]).name == "after"
                read = await client.call_tool("read_run", {"run": "long"})
                assert read.structured_content["status"] != "ok" and read.structured_content["files"] is None
                await _bad_input(client, tiny, tmp_path)

        anyio.run(scenario)
        assert not (tmp_path / "runs" / "long" / "result.json").exists()
        assert len(list((tmp_path / "runs" / "long" / "masks").glob("*.png"))) < 240
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log = stderr.read_text()
    assert "warning" not in log and KEY not in log and f"http://127.0.0.1:{port}/mcp" in log


def test_http_off_loopback_warns(monkeypatch, capsys, tmp_path):
    from mcp.server.mcpserver import MCPServer

    from alref.app import mcp as alref_mcp

    served = []
    monkeypatch.setattr(
        MCPServer, "run", lambda self, transport="stdio", **kw: served.append((transport, kw))
    )
    alref_mcp.serve({"models": "smoke"}, tmp_path, http=True, host="0.0.0.0", port=9999)
    assert served == [("streamable-http", {"host": "0.0.0.0", "port": 9999})]
    assert "alref: warning: serving MCP on 0.0.0.0" in capsys.readouterr().err
    alref_mcp.serve({"models": "smoke"}, tmp_path)  # stdio: no warning
    assert served[-1] == ("stdio", {}) and capsys.readouterr().err == ""


def test_errors_never_show_the_key(monkeypatch, tmp_path):
    """An error that quotes the key (a server's answer, a path) is sent with the key masked."""
    from alref.app.mcp import AlrefMCP, answering_errors
    from alref.errors import InputError

    monkeypatch.setenv("ALREF_LLM_API_KEY", KEY)
    server = AlrefMCP({"models": "smoke"}, tmp_path)

    def leaky() -> str:
        raise InputError(f"the server said: bad key {KEY}\n try again")

    result = answering_errors(leaky, server.settings)()
    assert result.is_error and result.content[0].text == "the server said: bad key *** try again"


@pytest.mark.usefixtures("one_torch_thread")
def test_refine_object_corrects_a_finished_run(tiny, tmp_path):
    """refine_object: the prompt is recorded in result.json and the masks rewritten (as `alref refine`);
    the same prompt again changes nothing; a frame out of range or an unknown object is one sentence."""
    import json

    from alref.app.mcp import AlrefMCP

    server = AlrefMCP({"models": "smoke", "overlay": False}, tmp_path / "runs")

    async def scenario() -> None:
        async with Client(server.server) as client:
            first = await client.call_tool(
                "segment_video", {"video": str(tiny), "references": ["the red square"]}
            )
            run = Path(first.structured_content["run"])
            before = (run / "masks.json").read_text()
            args = {
                "run": str(run),
                "object_id": 1,
                "frame": 5,
                "points": [[20, 30]],
                "negative_points": [[60, 5]],
            }
            refined = await client.call_tool("refine_object", args)
            assert not refined.is_error, _text(refined)
            assert refined.structured_content["notes"][-1] == "object 1 refined on frame 5"
            result = json.loads((run / "result.json").read_text())
            assert result["references"][0]["refinements"] == [
                {"frame": 5, "points": [[20.0, 30.0], [60.0, 5.0]], "labels": [1, 0], "box": None}
            ]
            assert (run / "masks.json").read_text() != before  # rewritten (its object's masks and summary)
            again = await client.call_tool("refine_object", args)
            assert "nothing changed" in again.structured_content["notes"][-1]
            for bad, expected in (({"frame": 99}, "outside the video"), ({"object_id": 7}, "no object 7")):
                error = await client.call_tool("refine_object", args | bad)
                assert error.is_error and expected in _text(error) and "\n" not in _text(error), _text(error)

    anyio.run(scenario)


@pytest.mark.usefixtures("one_torch_thread")
def test_models_stay_loaded_and_bad_arguments_are_one_line(tiny, tmp_path):
    """In process: a second call loads no model; a sentence given as a string is one reference; arguments
    that do not fit the schema are one line naming the argument."""
    from alref.app.mcp import AlrefMCP
    from alref.tools.loading import loaded_keys

    server = AlrefMCP({"models": "smoke", "overlay": False}, tmp_path / "runs")

    async def scenario() -> None:
        async with Client(server.server) as client:
            first = await client.call_tool(
                "segment_video", {"video": str(tiny), "references": ["the red square"]}
            )
            assert not first.is_error, _text(first)
            loaded = loaded_keys()
            second = await client.call_tool(
                "segment_video", {"video": str(tiny), "references": "the blue circle"}
            )
            assert not second.is_error, _text(second)
            assert loaded_keys() == loaded  # the models stayed loaded
            assert [r["text"] for r in second.structured_content["references"]] == ["the blue circle"]
            assert (
                second.structured_content["run"] != first.structured_content["run"]
            )  # one folder per request
            bad = await client.call_tool(
                "show_frame", {"run": first.structured_content["run"], "frame": "third"}
            )
            assert bad.is_error and _text(bad).startswith("invalid arguments for show_frame: frame: ")
            assert "\n" not in _text(bad)
            runs = await client.call_tool("list_runs", {})
            assert len(runs.structured_content["runs"]) == 2

    anyio.run(scenario)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_that_asks_returns_its_questions_and_answer_questions_continues_it(tiny, tmp_path, llm_server):
    """segment_video with ask: several boxes fit equally, so the run returns status 'question' with the
    questions; answer_questions continues it from its checkpoint (no LLM question asked again)."""
    import json

    from agent_script import Script
    from llm_server import Reply

    from alref.app.mcp import AlrefMCP

    script = Script(choose_box=json.dumps({"reasoning": "two squares", "box": 1, "ambiguous": [2]}))
    llm_server.default = lambda body: Reply(script(body["messages"]))
    server = AlrefMCP({"models": "smoke", "overlay": False, "llm": "m", "llm_base_url": llm_server.base_url,
                       "cache": False, "verify": False, "clip_frames": 5, "llm_backoff": 0}, tmp_path / "runs")  # fmt: skip

    async def scenario() -> None:
        async with Client(server.server) as client:
            asked = await client.call_tool(
                "segment_video", {"video": str(tiny), "references": ["the red square"], "ask": True}
            )
            assert not asked.is_error, _text(asked)
            summary = asked.structured_content
            assert summary["status"] == "question" and len(summary["questions"]) == 2
            assert "Which do you mean?" in summary["questions"][0]["question"]
            sent = len(llm_server.chat_requests)
            bad = await client.call_tool(
                "answer_questions", {"run": str(tmp_path / "elsewhere"), "answers": {}}
            )
            assert bad.is_error and "no run waits for answers" in _text(bad)
            done = await client.call_tool("answer_questions", {"run": summary["run"], "answers": {
                q["id"]: "2" for q in summary["questions"]}})  # fmt: skip
            assert not done.is_error, _text(done)
            assert done.structured_content["status"] == "ok" and len(llm_server.chat_requests) == sent
            result = json.loads((Path(summary["run"]) / "result.json").read_text())
            assert all(c["box_number"] == 2 for c in result["references"][0]["clips"] if c["valid"])

    anyio.run(scenario)
