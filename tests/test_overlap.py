"""The overlapped run (detection while decoding, mask PNGs written on a thread behind a bounded
queue while SAM 2 propagates) writes the same bytes as the serial run (``overlap=False``); the
queue's bound holds (a slow writer blocks the producer); a writer error reaches the caller as one
clear error and nothing is marked finished; an interrupted overlapped run resumes."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from agent_script import Script, clip_start

import alref
from alref.media.masks import QUEUE_FRAMES, MaskSink
from alref.media.video import VideoInfo
from alref.media.writers import BackgroundWriter, OutputWriteError

REFS = ["the red square", "the blue circle"]


def _files(out: Path) -> dict[str, bytes]:
    """Every mask output, by relative path (masks/, objects/, palette/, masks.json, detections)."""
    found = {}
    for sub in ("masks", "objects", "palette"):
        for p in sorted((out / sub).rglob("*.png")):
            found[str(p.relative_to(out))] = p.read_bytes()
    for name in ("masks.json", "work/detections.json"):
        found[name] = (out / name).read_bytes()
    return found


def _result(out: Path) -> dict:
    """result.json without what differs by design: the timings and the overlap setting itself."""
    result = json.loads((out / "result.json").read_text())
    result.pop("timings_s")
    assert result["settings"].pop("overlap") in (True, False)
    return result


def _samples(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "work").rglob("*.jpg"))}


# --- outputs -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_overlapped_outputs_are_the_serial_runs_bytes(shapes_mp4, tmp_path):
    runs = {}
    for overlap in (False, True):
        out = tmp_path / f"o{overlap}"
        result = alref.segment(shapes_mp4, REFS, out=out, models="smoke", clip_frames=10, overlay=False,
                               overlap=overlap, detect_batch=2, keep_work=True)  # fmt: skip
        assert result.status == "ok" and result.data["settings"]["overlap"] is overlap
        runs[overlap] = out
    serial, overlapped = _files(runs[False]), _files(runs[True])
    assert len([k for k in serial if k.startswith("objects/")]) == 2 * 30  # two objects: every writer ran
    assert len([k for k in serial if k.startswith("palette/")]) == 30
    assert serial.keys() == overlapped.keys()
    for name in serial:
        assert serial[name] == overlapped[name], name
    assert _result(runs[False]) == _result(runs[True])
    # the same identity: a rerun that only switches overlap is the finished run
    assert (runs[False] / "work" / "run_key").read_text() == (runs[True] / "work" / "run_key").read_text()


@pytest.mark.slow
def test_overlapped_agent_run_is_the_serial_runs_bytes(shapes_mp4, tmp_path):
    """With an LLM the sampled frames are saved for the agent as they are decoded: same images,
    same decisions, same masks."""
    runs = {}
    for overlap in (False, True):
        out = tmp_path / f"a{overlap}"
        script = Script(choose_box='{"reasoning": "second box", "box": 2}')
        result = alref.segment(shapes_mp4, "the red square", out=out, models="smoke", clip_frames=10, samples=5,
                               overlay=False, cache=False, chat_model=script.model(), overlap=overlap,
                               keep_work=True)  # fmt: skip
        assert result.data["mode"] == "agent" and result.status == "ok"
        runs[overlap] = out
    assert _samples(runs[False]) and _samples(runs[False]) == _samples(runs[True])
    assert _files(runs[False]) == _files(runs[True])
    assert _result(runs[False]) == _result(runs[True])


# --- the bounded writer queue --------------------------------------------------------------------------


def test_a_slow_writer_blocks_the_producer_at_the_bound():
    """No sleeps: the writer holds item 0 until the producer is seen waiting on a full queue."""
    holding, release = threading.Event(), threading.Event()
    written: list[int] = []
    done = {"puts": 0}
    waits: list[tuple[int, int]] = []

    def write(item: int) -> None:
        if item == 0:
            holding.set()
            release.wait()
        written.append(item)

    def on_full() -> None:
        waits.append((done["puts"], writer._queue.qsize()))
        release.set()

    writer = BackgroundWriter(write, max_pending=3, on_full=on_full)
    writer.put(0)
    holding.wait()  # item 0 is being written, the queue is empty
    for i in range(1, 12):
        writer.put(i)
        done["puts"] = i
    writer.close()
    # items 1..3 fill the queue; putting item 4 has to wait, with exactly 3 items queued
    assert waits[0] == (3, 3)
    assert written == list(range(12)) and writer.written == 12


def test_the_sink_queues_at_most_its_bound_and_says_the_bytes(tmp_path):
    info = VideoInfo(path=tmp_path / "v.mp4", kind="file", num_frames=40, fps=10.0, width=32, height=24,
                     frame_names=tuple(f"{i:05d}" for i in range(40)), has_audio=False)  # fmt: skip
    sink = MaskSink(tmp_path / "o", info, {1: "a"}, queue_frames=QUEUE_FRAMES)
    assert sink.frame_bytes() == 24 * 32  # one object: the union mask only
    several = MaskSink(tmp_path / "p", info, {1: "a", 2: "b"})
    assert several.frame_bytes() == 4 * 24 * 32  # the union, one per object, the palette map
    gate = threading.Event()
    seen: list[int] = []
    write = sink._write
    sink.writer._write = lambda item: (gate.wait(), write(item))
    sink.writer._on_full = lambda: (seen.append(sink.writer._queue.qsize()), gate.set())
    mask = np.zeros((24, 32), bool)
    mask[2:9, 3:7] = True
    with sink:
        for f in range(40):
            sink.add(f, {1: mask})
        sink.write_json()
    assert seen and seen[0] == QUEUE_FRAMES  # the producer waited with the queue full, never beyond it
    assert len(list((tmp_path / "o" / "masks").glob("*.png"))) == 40


# --- writer errors -------------------------------------------------------------------------------------


def test_a_writer_error_is_raised_in_the_caller():
    def write(item: int) -> None:
        if item == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    writer = BackgroundWriter(write, max_pending=2, what="mask PNGs")
    for i in range(6):
        try:
            writer.put(i)
        except OutputWriteError:
            break
    with pytest.raises(
        OutputWriteError, match="could not write the mask PNGs: OSError.*No space left"
    ) as info:
        writer.close()
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.slow
def test_a_png_that_cannot_be_written_fails_the_run_and_a_rerun_finishes(shapes_mp4, tmp_path, monkeypatch):
    from alref.media import masks as masks_mod

    out = tmp_path / "o"
    write_png = masks_mod.write_mask_png

    def full_disk(path, mask):
        if path.stem == "00012":
            raise OSError(errno.ENOSPC, "No space left on device")
        write_png(path, mask)

    monkeypatch.setattr(masks_mod, "write_mask_png", full_disk)
    with pytest.raises(OutputWriteError, match="No space left on device"):
        alref.segment(shapes_mp4, "the red square", out=out, models="smoke", clip_frames=10, overlay=False)
    assert not (out / "result.json").exists() and not (out / "masks.json").exists()  # nothing looks finished
    assert not list((out / "masks").glob(".*.tmp"))  # no half-written PNG
    monkeypatch.setattr(masks_mod, "write_mask_png", write_png)
    result = alref.segment(
        shapes_mp4, "the red square", out=out, models="smoke", clip_frames=10, overlay=False
    )
    assert result.status == "ok" and len(list((out / "masks").glob("*.png"))) == 30


# --- resume --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_interrupted_while_decoding_and_detecting_resumes(shapes_mp4, tmp_path, monkeypatch):
    from alref.tools import grounding

    detect = grounding.GroundingDetector.detect
    calls = {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return detect(self, *a, **k)

    monkeypatch.setattr(grounding.GroundingDetector, "detect", interrupted)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        alref.segment(shapes_mp4, "the red square", out=out, models="smoke", clip_frames=10, overlay=False)
    assert not (out / "result.json").exists()
    assert not any(t.name == "alref-decode" for t in threading.enumerate())  # the decoding thread stopped
    monkeypatch.setattr(grounding.GroundingDetector, "detect", detect)
    result = alref.segment(
        shapes_mp4, "the red square", out=out, models="smoke", clip_frames=10, overlay=False
    )
    fresh = tmp_path / "fresh"
    alref.segment(shapes_mp4, "the red square", out=fresh, models="smoke", clip_frames=10, overlay=False,
                  overlap=False)  # fmt: skip
    assert result.status == "ok"
    assert _files(out) == _files(fresh)


# --- overlay.mp4 while the masks arrive ----------------------------------------------------------------


def _decoded(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


def test_the_frames_before_the_start_are_encoded_in_chunks_halving_towards_frame_0():
    from alref.media.masks import backward_chunks

    assert backward_chunks(100, 16) == [range(50, 100), range(25, 50), range(0, 25)]
    assert backward_chunks(11, 16) == [range(0, 11)]
    chunks = backward_chunks(5000, 16)
    assert sorted(f for c in chunks for f in c) == list(range(5000))  # every frame once
    assert len(chunks[-1]) < 2 * 16  # what is left once SAM 2 reaches frame 0
    assert sum(c.stop for c in chunks) < 2 * 5000  # each chunk decodes the video from its start


@pytest.mark.parametrize(("start", "min_chunk"), [(0, 16), (11, 16), (20, 4)])
def test_the_overlay_stream_is_the_overlay_in_propagation_order(
    shapes_mp4, tmp_path, start, min_chunk, monkeypatch
):
    from alref.media import masks as masks_module
    from alref.media.masks import OverlayStream, write_overlay
    from alref.media.video import open_video

    joined = []
    concat = masks_module.concat_videos
    monkeypatch.setattr(
        masks_module, "concat_videos", lambda parts, path: joined.append(len(parts)) or concat(parts, path)
    )
    monkeypatch.setattr(OverlayStream, "MIN_CHUNK", min_chunk)

    video = open_video(shapes_mp4)
    n, h, w = video.info.num_frames, video.info.height, video.info.width
    boxes = {start: [((10.0, 10.0, 60.0, 50.0), "1")]}
    sink = MaskSink(tmp_path / "o", video.info, {1: "a"})
    order = (
        list(range(start + 1, n)) + list(range(start, -1, -1)) if start else list(range(n))
    )  # SAM 2's order
    with OverlayStream(tmp_path / "o" / "overlay.mp4", video, sink, boxes) as stream:
        for f in order:
            mask = np.zeros((h, w), bool)
            mask[f : f + 40, 2 * f : 2 * f + 50] = True
            sink.add(f, {1: mask})
        stream.finish()
    write_overlay(tmp_path / "serial.mp4", video, sink, boxes)
    streamed, serial = _decoded(tmp_path / "o" / "overlay.mp4"), _decoded(tmp_path / "serial.mp4")
    assert streamed.shape == serial.shape == (n, h + h % 2, w + w % 2, 3)
    # the same frames; only the encoder's keyframe placement differs (lossy codec: compare loosely)
    assert np.abs(streamed.astype(int) - serial.astype(int)).mean() < 2.0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["masks", "overlay.mp4"]  # no parts left
    for path in (tmp_path / "o" / "overlay.mp4", tmp_path / "serial.mp4"):  # both keep the video's sound
        with av.open(str(path)) as container:
            assert len(container.streams.audio) == 1
    # part A, and frames 0 .. start in chunks: 21 frames with chunks of at least 4 -> [10, 21), [5, 10), [0, 5)
    assert joined == {0: [], 11: [2], 20: [4]}[start]


def test_an_interrupted_overlay_stream_leaves_no_file(shapes_mp4, tmp_path):
    from alref.media.masks import OverlayStream
    from alref.media.video import open_video

    video = open_video(shapes_mp4)
    sink = MaskSink(tmp_path / "o", video.info, {1: "a"})
    with pytest.raises(KeyboardInterrupt), OverlayStream(tmp_path / "o" / "overlay.mp4", video, sink, {}):
        for f in range(20, 30):
            sink.add(f, {})
        raise KeyboardInterrupt
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["masks"]
    assert not any(t.name == "alref-overlay" for t in threading.enumerate())


@pytest.mark.parametrize("agent", [False, True])
def test_progress_is_reported_from_the_callers_thread_only(shapes_mp4, tmp_path, agent):
    """A reporter belongs to the thread that runs the pipeline (a LangGraph stream writer, a browser's
    progress bar): the decode, detection, agent and writer threads never call it."""
    from contextlib import nullcontext

    from alref.config import load_settings
    from alref.pipeline.run import segment_video
    from alref.progress import Reporter

    caller = threading.get_ident()
    calls: list[tuple[str, int]] = []

    class Stage:
        def __init__(self, name: str) -> None:
            self.name = name

        def advance(self, amount: int = 1) -> None:
            calls.append((self.name, threading.get_ident()))

    class Recorder(Reporter):
        def stage(self, name, total):
            calls.append((name, threading.get_ident()))
            return nullcontext(Stage(name))

        def note(self, message):
            calls.append(("note", threading.get_ident()))

    settings = load_settings(models="smoke", clip_frames=10, overlap=True, cache=False)
    model = Script().model() if agent else None
    segment_video(shapes_mp4, REFS, tmp_path / "o", settings, Recorder(), chat_model=model)
    stages = {name for name, _ in calls}
    assert {"decode", "propagation", "overlay", "reasoning" if agent else "selection"} <= stages
    assert {thread for _, thread in calls} == {caller}
    assert calls.count(("reasoning", caller)) == (1 + 2 * 3 if agent else 0)  # opened once, a tick per clip


# --- the agent reasons while the video is decoded and detected -----------------------------------------


class _GatedDetector:
    """The real detector, whose ``gate_call``-th call first runs ``gate()`` (on the producer's thread)."""

    def __init__(self, monkeypatch, gate_call: int, gate) -> None:
        from alref.tools import grounding

        self.calls = 0
        detect = grounding.GroundingDetector.detect

        def gated(detector, *a, **k):
            self.calls += 1
            if self.calls == gate_call:
                gate()
            return detect(detector, *a, **k)

        monkeypatch.setattr(grounding.GroundingDetector, "detect", gated)


def _agent_run(video, out, model, **settings):
    return alref.segment(video, "the red square", out=out, models="smoke", clip_frames=10, samples=5,
                         detect_batch=5, overlay=False, cache=False, chat_model=model,
                         **settings)  # fmt: skip


@pytest.mark.slow
def test_the_agent_reasons_about_the_first_clip_while_the_last_is_detected(shapes_mp4, tmp_path, monkeypatch):
    """15 sampled frames in batches of 5: the third (last) detector call waits until the LLM has been
    asked about the first clip, which happens only if the agent does not wait for all detections."""
    script = Script()
    asked = threading.Event()

    def answer(messages):
        if clip_start(messages) == 0:  # not the syntax question, which needs no frame
            asked.set()
        return script(messages)

    waited = []
    gated = _GatedDetector(monkeypatch, 3, lambda: waited.append(asked.wait(60)))
    from scripted_llm import ScriptedChatModel

    result = _agent_run(shapes_mp4, tmp_path / "o", ScriptedChatModel([answer] * 100))
    assert gated.calls == 3 and waited == [True]
    assert result.status == "ok" and result.data["mode"] == "agent"
    assert {"decode", "detection", "selection"} <= set(result.data["timings_s"])


@pytest.mark.slow
def test_a_detection_error_while_the_agent_reasons_ends_the_run_with_it_and_a_rerun_resumes(
    shapes_mp4, tmp_path, monkeypatch
):
    script = Script()
    out = tmp_path / "o"

    def fail():
        raise RuntimeError("the detector ran out of memory")

    _GatedDetector(monkeypatch, 2, fail)
    with pytest.raises(RuntimeError, match="ran out of memory"):  # the cause, not a waiting branch's error
        _agent_run(shapes_mp4, out, script.model())
    assert not (out / "result.json").exists()
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("alref-decode", "alref-work"))]
    monkeypatch.undo()
    again = Script()
    result = _agent_run(shapes_mp4, out, again.model())
    assert result.status == "ok"
    fresh = Script()
    _agent_run(shapes_mp4, tmp_path / "fresh", fresh.model(), overlap=False)
    assert _files(out) == _files(tmp_path / "fresh")
    # the first clip was decided before the failure, from the checkpoint: not asked again
    assert sum(again.steps.values()) < sum(fresh.steps.values())


@pytest.mark.slow
def test_an_agent_failure_stops_the_decoding_and_detection(shapes_mp4, tmp_path, monkeypatch):
    from alref.agent import graph

    detecting, failed = threading.Event(), threading.Event()

    def broken(state, runtime):
        assert detecting.wait(60)
        failed.set()
        raise RuntimeError("a bug in describe_event")

    monkeypatch.setattr(graph, "describe_event", broken)

    def after_the_failure():
        detecting.set()
        assert failed.wait(60)
        for thread in threading.enumerate():
            if thread.name == "alref-work-1":  # the selection's thread: it sets the cancel as it ends
                thread.join(60)

    gated = _GatedDetector(monkeypatch, 1, after_the_failure)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError, match="a bug in describe_event"):
        _agent_run(shapes_mp4, out, Script().model())
    assert gated.calls == 1  # the second and third batches were never detected
    assert not (out / "result.json").exists() and not (out / "work" / "detections.json").exists()
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("alref-decode", "alref-work"))]
