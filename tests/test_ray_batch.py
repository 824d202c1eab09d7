"""A manifest batch on a real Ray cluster started on 127.0.0.1 (2 workers, smoke models, the scripted
OpenAI-compatible server): the same masks as without Ray, a worker killed mid-video by its PID does
not lose or duplicate a video, and a rerun recomputes nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import synth
from agent_script import Script
from llm_server import Reply

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

VIDEOS = ("v1", "v2", "v3", "v4")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address():
    """`ray start --head` on 127.0.0.1 with 2 CPUs (so 2 workers of one CPU each); stopped after."""
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                    "--temp-dir", temp], check=True, capture_output=True, timeout=180)  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("batch")
    lines = []
    for i, name in enumerate(VIDEOS):
        synth.write_shapes_video(folder / f"{name}.mp4", num_frames=16 + 2 * i, audio=False)
        lines.append(json.dumps({"video": f"{name}.mp4", "reference": "the red square"}))
    lines.append(json.dumps({"video": "v1.mp4", "reference": "the blue circle"}))
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    return folder


class HeldScript:
    """The GPT-PS script, answering only once ``release`` is set; counts the requests in flight."""

    def __init__(self) -> None:
        self.script = Script()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.answered = 0

    def __call__(self, body):
        with self.lock:
            self.in_flight += 1
        try:
            self.release.wait(timeout=300)
            return Reply(self.script(body["messages"]))
        finally:
            with self.lock:
                self.in_flight -= 1
                self.answered += 1


def _args(batch: Path, out: Path, server, *extra: str) -> list[str]:
    return ["segment", "--manifest", str(batch / "m.jsonl"), "--out", str(out), "--models", "smoke",
            "--llm", "scripted", "--llm-base-url", server.base_url, "--llm-concurrency", "2", "--no-cache",
            "--no-overlay", *extra]  # fmt: skip


def _alref(args: list[str], stderr) -> subprocess.Popen:
    env = os.environ | {"ALREF_LLM_BACKOFF": "0", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "alref.cli", *args], stdout=subprocess.PIPE, stderr=stderr,
                            text=True, env=env)  # fmt: skip


def _wait_for(condition, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _outputs(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and (p.name == "masks.json" or p.suffix == ".png")}  # fmt: skip


@pytest.fixture(scope="module")
def without_ray(batch, tmp_path_factory) -> Path:
    """The same batch in one process, no Ray: the reference outputs."""
    from llm_server import ScriptedOpenAIServer

    out = tmp_path_factory.mktemp("local") / "out"
    held = HeldScript()
    held.release.set()
    with ScriptedOpenAIServer(held) as server:
        proc = _alref(_args(batch, out, server), subprocess.PIPE)
        _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_the_batch_on_two_ray_workers_gives_the_same_masks_as_without_ray(batch, without_ray, ray_address,
                                                                           tmp_path, llm_server):  # fmt: skip
    held = HeldScript()
    held.release.set()
    llm_server.default = held
    out = tmp_path / "out"
    proc = _alref(_args(batch, out, llm_server, "--ray-address", ray_address, "--json"), subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["executor"] == "ray" and summary["ran"] == len(VIDEOS)
    assert stderr.count("ready (pid ") == 2  # one long-lived worker per CPU slot, models loaded once each
    assert {r["worker"] for r in summary["records"]} == {"ray worker 1", "ray worker 2"}
    assert summary["llm_slots"]["most_at_once"] <= 2 and summary["llm_slots"]["held"] == 0
    for name in VIDEOS:
        assert _outputs(out / name) == _outputs(without_ray / name), name
        assert json.loads((out / name / "result.json").read_text())["mode"] == "agent"


def test_a_worker_killed_mid_video_loses_nothing_and_a_rerun_recomputes_nothing(batch, without_ray, ray_address,
                                                                                 tmp_path, llm_server):  # fmt: skip
    held = HeldScript()  # every LLM answer waits until the worker is killed
    llm_server.default = held
    out, log = tmp_path / "out", tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = _alref(_args(batch, out, llm_server, "--ray-address", ray_address), err)
        try:
            _wait_for(lambda: log.read_text().count("ready (pid ") == 2, "two ready workers")
            _wait_for(lambda: held.in_flight == 2, "both workers in the middle of a video")
            line = next(x for x in log.read_text().splitlines() if "worker 1 of 2 ready (pid " in x)
            pid = int(line.split("(pid ")[1].split()[0])
            os.kill(pid, signal.SIGKILL)
            _wait_for(lambda: "died during" in log.read_text(), "the driver to see the death")
            held.release.set()
            proc.communicate(timeout=600)
        finally:
            held.release.set()
            if proc.poll() is None:
                proc.kill()
    stderr = log.read_text()
    assert proc.returncode == 0, stderr
    assert "worker 1 died during" in stderr and "it is retried" in stderr
    records = _records(out)
    assert sorted(r["name"] for r in records) == sorted(VIDEOS)  # every video exactly once
    assert [r["attempts"] for r in records].count(2) == 1
    for name in VIDEOS:
        assert _outputs(out / name) == _outputs(without_ray / name), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["llm_slots"]["held"] == 0  # the dead worker's LLM slot was given back

    # rerun: every video is skipped, no worker starts, the LLM is not asked, nothing is rewritten
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}
    asked = len(llm_server.chat_requests)
    proc = _alref(_args(batch, out, llm_server, "--ray-address", ray_address), subprocess.PIPE)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"skipping {len(VIDEOS)} of {len(VIDEOS)} videos already done" in stderr
    assert "ready (pid " not in stderr
    assert len(llm_server.chat_requests) == asked
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out} == before
    assert len(_records(out)) == len(VIDEOS)


def test_eval_run_on_ray_scores_and_predicts_the_same_as_without(ray_address, tmp_path):
    import eval_synth

    eval_synth.write_refdavis(tmp_path / "ds", videos=3, frames=4, size=(32, 32), objects=1)
    common = ["eval", "run", "ref-davis", "--root", str(tmp_path / "ds"), "--models", "smoke", "--samples", "1",
              "--clip-frames", "4", "--json"]  # fmt: skip
    summaries = {}
    for name, extra in (("local", []), ("ray", ["--ray-address", ray_address])):
        proc = _alref([*common, "--out", str(tmp_path / name), *extra], subprocess.PIPE)
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        summaries[name] = json.loads(stdout)
    assert summaries["ray"]["scores"] == summaries["local"]["scores"]
    predictions = {name: {str(p.relative_to(tmp_path / name / "predictions")): p.read_bytes()
                          for p in sorted((tmp_path / name / "predictions").rglob("*.png"))}
                   for name in summaries}  # fmt: skip
    assert predictions["ray"] == predictions["local"] and predictions["local"]
