"""`alref segment --manifest`: the manifest reader, the batch runner in this process (prefetch, skip
what is done, bad rows reported and skipped) and the same outputs as one `alref segment` per video."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import synth

from alref.config import load_settings
from alref.errors import InputError
from alref.pipeline.audio import VIDEO_TRACK
from alref.pipeline.batch import Job, LocalExecutor, prefetch_frames, run_job
from alref.pipeline.manifest import read_manifest
from alref.progress import Reporter

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    synth.write_shapes_video(folder / "a.mp4", num_frames=12)
    synth.write_shapes_video(folder / "b.mp4", num_frames=10, audio=False)
    synth.write_frames_folder(folder / "c", num_frames=8)
    synth.write_wav(folder / "tone.wav", seconds=1.0)
    return folder


def test_csv_rows_of_one_video_merge_in_order_and_paths_are_read_from_the_manifest_folder(videos, tmp_path):
    manifest = _write(videos / "m.csv", "video,reference\na.mp4,the red square\nc,the square\n"
                      "a.mp4,the blue circle\na.mp4,the red square\n")  # fmt: skip
    jobs, bad = read_manifest(manifest, tmp_path / "out")
    assert bad == []
    assert [(j.name, j.references, j.rows) for j in jobs] == [
        ("a", ("the red square", "the blue circle"), (2, 4, 5)),
        ("c", ("the square",), (3,)),
    ]
    assert jobs[0].video == str((videos / "a.mp4").resolve())
    assert jobs[0].run_dir == str((tmp_path / "out" / "a").resolve())


def test_jsonl_takes_a_list_of_references_audio_and_out(videos, tmp_path):
    lines = [
        {"video": "a.mp4", "reference": ["the red square", "the blue circle"], "out": "first"},
        {"video": "b.mp4", "audio": "tone.wav"},
        {"video": "a.mp4", "audio": "video", "reference": "the thing making the tone"},
    ]
    manifest = _write(videos / "m.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    jobs, bad = read_manifest(manifest, tmp_path / "out")
    assert bad == []
    assert [(j.name, j.references, j.audio) for j in jobs] == [
        ("first", ("the red square", "the blue circle"), None),
        ("b", (), str((videos / "tone.wav").resolve())),
        ("a", ("the thing making the tone",), VIDEO_TRACK),
    ]
    assert jobs[1].segment_references() == [] and jobs[1].audio_request().text is None
    assert jobs[2].audio_request().text == "the thing making the tone"


def test_two_videos_of_one_name_get_two_folders(videos, tmp_path):
    (videos / "other").mkdir()
    synth.write_shapes_video(videos / "other" / "a.mp4", num_frames=6)
    manifest = _write(videos / "m.csv", "video,reference\na.mp4,x\nother/a.mp4,y\n")
    jobs, _ = read_manifest(manifest, tmp_path / "out")
    assert [j.name for j in jobs] == ["a", "a-2"]


def test_bad_rows_are_reported_with_their_line_and_the_others_kept(videos, tmp_path):
    manifest = _write(videos / "m.jsonl", "\n".join([
        json.dumps({"video": "a.mp4", "reference": "the red square"}),
        json.dumps({"video": "missing.mp4", "reference": "x"}),
        json.dumps({"video": "b.mp4", "reference": "  "}),
        "{not json",
        json.dumps({"video": "b.mp4", "refrence": "typo"}),
        json.dumps(["a.mp4", "x"]),
        json.dumps({"video": "b.mp4", "reference": "x", "audio": "nope.wav"}),
        json.dumps({"video": "b.mp4", "reference": "x", "out": "../escape"}),
        json.dumps({"video": "c", "reference": "x", "out": "a"}),
        json.dumps({"video": "b.mp4", "reference": [1, 2]}),
    ]) + "\n")  # fmt: skip
    jobs, bad = read_manifest(manifest, tmp_path / "out")
    assert [j.name for j in jobs] == ["a"]
    reasons = {b.line: b.reason for b in bad}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert reasons[2] == "no such video: missing.mp4"
    assert reasons[3].startswith("empty reference")
    assert reasons[4].startswith("not JSON")
    assert "unknown key 'refrence'" in reasons[5]
    assert reasons[7] == "no such audio file: nope.wav"
    assert "already the folder of" in reasons[9]
    assert "sentence or a list" in reasons[10]


def test_a_csv_without_a_video_column_or_with_an_unknown_one_is_refused(videos, tmp_path):
    with pytest.raises(InputError, match="at least `video`"):
        read_manifest(_write(videos / "m.csv", "path,reference\na.mp4,x\n"), tmp_path)
    with pytest.raises(InputError, match="unknown column 'ref'"):
        read_manifest(_write(videos / "m.csv", "video,ref\na.mp4,x\n"), tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_manifest(videos / "absent.csv", tmp_path)
    _, bad = read_manifest(_write(videos / "m.csv", "video,reference\na.mp4,x,extra\n"), tmp_path)
    assert bad[0].reason == "3 cells for 2 columns"


class _Stages(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, int | None] = {}

    def stage(self, name, total):
        self.totals[name] = total
        return super().stage(name, total)


def test_a_prefetched_video_decodes_only_its_sampled_frames_again_and_gives_the_same_masks(videos, tmp_path):
    settings = load_settings(models="smoke", overlay=False)
    plain = Job("a", str(videos / "a.mp4"), ("the red square",), str(tmp_path / "plain"))
    ahead = Job("a", str(videos / "a.mp4"), ("the red square",), str(tmp_path / "ahead"))
    assert prefetch_frames(ahead, settings) is True
    stages = _Stages()
    outcome = run_job(ahead, settings, stages)
    assert outcome.ok, outcome.error
    sampled = len({f for c in outcome.result["clips"] for f in c["samples"]})
    assert stages.totals["decode"] == sampled < 12  # the frame store was there
    assert run_job(plain, settings, Reporter()).ok
    assert (tmp_path / "ahead" / "masks.json").read_bytes() == (
        tmp_path / "plain" / "masks.json"
    ).read_bytes()
    assert prefetch_frames(ahead, settings) is False  # a folder with a result is left to its run


def test_a_video_that_fails_is_an_outcome_not_an_exception(videos, tmp_path):
    synth.write_text_as_video(videos / "bad.mp4")
    outcome = run_job(Job("bad", str(videos / "bad.mp4"), ("x",), str(tmp_path / "bad")),
                      load_settings(models="smoke"), Reporter())  # fmt: skip
    assert not outcome.ok and outcome.exit_code == 2 and "\n" not in outcome.error


def test_the_local_executor_runs_every_job_in_order(videos, tmp_path):
    settings = load_settings(models="smoke", overlay=False)
    jobs = [
        Job(n, str(videos / v), ("the red square",), str(tmp_path / n))
        for n, v in (("a", "a.mp4"), ("c", "c"))
    ]
    seen: list[tuple[str, str]] = []

    class Progress:
        reporter = Reporter()

        def started(self, job, worker):
            seen.append(("start", job.name))

        def finished(self, outcome):
            seen.append(("done", outcome.job.name if outcome.ok else outcome.error))

        def note(self, message):
            pass

    LocalExecutor(settings).run(jobs, Progress())
    assert seen == [("start", "a"), ("done", "a"), ("start", "c"), ("done", "c")]


# ---------------------------------------------------------------------------------------------
# the command


@pytest.mark.slow
def test_segment_manifest_writes_one_folder_per_video_like_a_single_run_and_a_rerun_skips_them(
    videos, tmp_path, run_cli
):
    manifest = _write(videos / "m.csv", "video,reference,out\na.mp4,the red square,\n"
                      "a.mp4,the blue circle,\nc,the red square,frames\nmissing.mp4,x,\nb.mp4,,\n")  # fmt: skip
    out = tmp_path / "batch"
    code, stdout, stderr = run_cli("segment", "--manifest", manifest, "--out", out, "--models", "smoke")
    assert code == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("alref: error: 2 manifest rows skipped;") and str(out) in last
    assert "manifest line 5: no such video: missing.mp4; skipped" in stderr
    assert "manifest line 6: empty reference" in stderr
    assert "frames" in stdout and "60/60" not in stdout
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["name"], r["references"], r["status"]) for r in records] == [
        ("a", ["the red square", "the blue circle"], "ok"),
        ("frames", ["the red square"], "ok"),
    ]
    # the same layout and bytes as `alref segment VIDEO --ref … --out` for each video
    code, _, _ = run_cli("segment", videos / "a.mp4", "--ref", "the red square", "--ref", "the blue circle",
                         "--models", "smoke", "--out", tmp_path / "single")  # fmt: skip
    assert code == 0
    single = tmp_path / "single"
    for name in ("masks.json", "overlay.mp4", "masks/00000.png", "objects/2/00011.png", "palette/00003.png"):
        assert (out / "a" / name).read_bytes() == (single / name).read_bytes(), name
    assert json.loads((out / "summary.json").read_text())["ran"] == 2

    before = {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    code, stdout, stderr = run_cli(
        "segment", "--manifest", manifest, "--out", out, "--models", "smoke", "--json"
    )
    assert code == 1
    summary = json.loads(stdout)
    assert (summary["ran"], summary["skipped_done"], len(summary["bad_rows"])) == (0, 2, 2)
    assert "skipping 2 of 2 videos already done" in stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")} == before
    assert len((out / "results.jsonl").read_text().splitlines()) == 2  # nothing written twice


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["examples/shapes.mp4", "--manifest", "m.csv"], "--manifest takes the videos"),
        (["examples/shapes.mp4", "x", "--ray"], "give it with --manifest FILE"),
        (["--manifest", "absent.csv"], "no such file"),
        (["--manifest", "m.csv", "--ray-workers", "2"], "--ray-workers needs --ray"),
    ],
)
def test_segment_batch_usage_errors_are_one_line_exit_2(args, message, run_cli, tmp_path):
    _write(tmp_path / "m.csv", "video,reference\nnothing.mp4,x\n")
    code, _, stderr = run_cli("segment", *args, "--models", "smoke")
    assert code == 2
    assert message in stderr and len(stderr.strip().splitlines()) == 1


def test_a_manifest_whose_model_is_missing_exits_3_with_the_models_message(run_cli, tmp_path, videos):
    """As the README's exit codes say for a single run: a missing model is 3, not 1."""
    _write(tmp_path / "m.csv", f"video,reference\n{videos / 'a.mp4'},x\n{videos / 'c'},y\n")
    code, _, stderr = run_cli("segment", "--manifest", "m.csv", "--offline", "--models", "default",
                              "--segmentation-model", str(tmp_path / "no-such-folder"))  # fmt: skip
    assert code == 3, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("alref: error: ") and "2 of 2 videos failed" in last
    assert "no-such-folder" in last or "not available" in last


def test_a_manifest_where_no_row_can_run_is_exit_2(run_cli, tmp_path):
    _write(tmp_path / "m.csv", "video,reference\nnothing.mp4,x\n")
    code, _, stderr = run_cli("segment", "--manifest", "m.csv", "--models", "smoke")
    assert code == 2 and "no row can run (1 skipped)" in stderr


def test_an_unreachable_ray_address_is_one_line_exit_2_naming_it(run_cli, tmp_path, videos):
    pytest.importorskip("ray")
    from llm_server import ScriptedOpenAIServer

    address = ScriptedOpenAIServer.closed_port_url().removeprefix("http://").removesuffix("/v1")
    _write(tmp_path / "m.csv", f"video,reference\n{videos / 'a.mp4'},x\n")
    for command in (
        ["segment", "--manifest", "m.csv"],
        ["eval", "run", "mevis", "--root", ".", "--out", "ev"],
    ):
        code, _, stderr = run_cli(*command, "--ray-address", address, "--models", "smoke")
        assert code == 2, stderr
        assert stderr.strip().splitlines() == [stderr.strip()]
        assert f"cannot reach the Ray cluster at {address}" in stderr
    assert not (tmp_path / "alref-out").exists()  # nothing was started


def test_the_cluster_llm_gate_caps_calls_and_gives_a_dead_workers_slots_back():
    import asyncio

    from alref.pipeline.cluster import _Gate

    async def scenario():
        gate = _Gate(2)
        await gate.acquire("w1")
        await gate.acquire("w1")
        third = asyncio.ensure_future(gate.acquire("w2"))
        await asyncio.sleep(0)
        assert not third.done()  # the cap holds
        assert await gate.release_all("w1") == 2  # w1 died holding two slots
        await asyncio.wait_for(third, 1)
        await gate.release("w2")
        await gate.release("w2")  # a release without a slot gives nothing back
        return await gate.stats()

    assert asyncio.run(scenario()) == {"limit": 2, "held": 0, "most_at_once": 2}


def test_a_worker_gets_the_api_key_from_the_drivers_environment(monkeypatch):
    from alref.pipeline.cluster import worker_settings

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    settings = worker_settings(load_settings())
    monkeypatch.delenv("OPENAI_API_KEY")
    assert settings.api_key == "sk-from-env"
    assert "sk-from-env" not in json.dumps(settings.public_dict())


def test_a_dead_workers_queued_llm_call_gets_no_slot():
    """The cluster's LLM gate: a worker that dies while its call waits for a slot must not keep the slot
    it is given after its other slots were taken back (the driver's release_all ran first)."""
    import asyncio

    from alref.pipeline.cluster import _Gate

    async def scenario() -> dict:
        gate = _Gate(1)
        await gate.acquire("alive")
        waiting = asyncio.create_task(gate.acquire("dead"))  # queued behind the one slot
        await asyncio.sleep(0)
        assert await gate.release_all("dead") == 0  # the driver saw the death: nothing held yet
        await gate.release("alive")
        await waiting  # the queued call gets the slot... and gives it straight back
        await asyncio.wait_for(gate.acquire("alive"), 5)  # so the slot is free for the living
        await gate.release("alive")
        return await gate.stats()

    assert asyncio.run(scenario())["held"] == 0
