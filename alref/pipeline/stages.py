"""The stages of a run that touch frames and models: one decoding pass, detection on the sampled
frames (``decode_and_detect``: both at once, the decoding on a thread), and SAM 2 propagation of the
decided pivots.

Memory: one decoding pass writes every frame, resized to SAM 2's square input, into a uint8 file
in ``<out>/work/`` (side² × 3 bytes per frame: 3 MiB at 1024 px; written and read one frame at a
time, never mapped, so it is not in the process's resident memory) and keeps only the sampled frames
at full resolution (H × W × 3 bytes each, e.g. 2.6 MiB at 720p, ``samples`` per clip): ``decode``
puts them in a temporary file in ``work/`` (:class:`SampledFrames`, read back one at a time);
``decode_and_detect`` holds at most ``SAMPLE_QUEUE_BATCHES`` detection batches of them in memory, the
decoding waiting for a slower detector.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alref.core.baseline import start_frame
from alref.core.records import Detection, ReferenceDecision
from alref.core.workspace import Workspace
from alref.media.masks import MaskSink
from alref.media.offsets import OffsetFile
from alref.media.video import Video
from alref.media.writers import atomic_write_json
from alref.pipeline.keys import digest
from alref.progress import Reporter
from alref.tools.segmentation import MemmapFrameStore, Sam2VideoSegmenter


def _open_store(video: Video, segmenter, workspace: Workspace, video_digest: str):
    """The frame store, and whether it already holds every frame (an interrupted run decoded them)."""
    info = video.info
    side = segmenter.image_size
    store = MemmapFrameStore(workspace.frame_store(side), info.num_frames, side)
    marker = {
        "video": video_digest,
        "num_frames": info.num_frames,
        "side": side,
        "segmenter": type(segmenter).__name__,
    }
    done_marker = workspace.frame_store_done(side)
    resumed = store.reopened and done_marker.is_file() and json.loads(done_marker.read_text()) == marker
    return store, resumed, lambda: done_marker.write_text(json.dumps(marker))


def _decode_into(
    video, segmenter, store, resumed, mark_done, sampled, on_sample, advance, stopped=None
) -> None:
    """The one decoding pass: every frame into ``store`` (or, ``resumed``, only the sampled frames
    are read), ``on_sample(index, frame)`` for each sampled frame, in increasing order; it ends
    early, leaving the store unfinished, once ``stopped()`` is true."""
    wanted = set(sampled)
    for index, frame in video.iter_frames(sampled if resumed else None):
        if stopped is not None and stopped():
            return
        if not resumed:
            store[index] = segmenter.prepare_frame(frame)
        if index in wanted:
            on_sample(index, frame)
        advance()
    if not resumed:
        store.flush()
        mark_done()


class SampledFrames(Mapping[int, np.ndarray]):
    """Sampled frames at full resolution (H × W × 3 bytes each), kept in an unnamed temporary file in
    ``folder`` (created with the first frame) and read back one at a time, by index, in the order they
    were added: what ``decode`` returns, so a run does not hold a tenth of its video in memory."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._file: OffsetFile | None = None
        self._where: dict[int, tuple[int, tuple[int, ...]]] = {}
        self._lock = threading.Lock()

    def __setitem__(self, index: int, frame: np.ndarray) -> None:
        with self._lock:
            if self._file is None:
                self._file = OffsetFile.temporary(
                    self.folder, ".samples-", "the sampled frames' temporary file"
                )
        offset, _ = self._file.append(np.ascontiguousarray(frame, dtype=np.uint8))
        self._where[int(index)] = (offset, tuple(frame.shape))

    def __getitem__(self, index: int) -> np.ndarray:
        offset, shape = self._where[index]
        frame = np.empty(shape, dtype=np.uint8)
        self._file.read_into(offset, frame)  # type: ignore[union-attr]
        return frame

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._where))

    def __len__(self) -> int:
        return len(self._where)


def decode(
    video: Video,
    segmenter: Sam2VideoSegmenter,
    sampled: list[int],
    workspace: Workspace,
    reporter: Reporter,
    video_digest: str,
):
    """One decoding pass (see the module docstring); returns the store and the sampled frames."""
    store, resumed, mark_done = _open_store(video, segmenter, workspace, video_digest)
    keep = SampledFrames(workspace.work)
    total = len(set(sampled)) if resumed else video.info.num_frames
    with reporter.stage("decode", total) as stage:
        _decode_into(video, segmenter, store, resumed, mark_done, sampled, keep.__setitem__, stage.advance)
    return store, keep


def _detection_key(run_key, references, sampled, settings, models) -> str:
    return digest(
        [
            run_key,
            references,
            settings.box_threshold,
            settings.text_threshold,
            settings.top_k,
            sampled,
            models.describe()["grounding"],
        ]
    )


def saved_detections(references, sampled, settings, models, workspace: Workspace, run_key):
    """The detections an interrupted run saved in work/ for exactly this input, else None."""
    cache = workspace.detections
    if not cache.is_file():
        return None
    saved = json.loads(cache.read_text())
    if saved.get("key") != _detection_key(run_key, references, sampled, settings, models):
        return None
    return {
        int(obj): {
            int(f): [Detection(tuple(d["box"]), d["score"], d["phrase"]) for d in dets]
            for f, dets in per.items()
        }
        for obj, per in saved["detections"].items()
    }


def _save_detections(result, references, sampled, settings, models, workspace: Workspace, run_key) -> None:
    atomic_write_json(
        workspace.detections,
        {
            "key": _detection_key(run_key, references, sampled, settings, models),
            "detections": {
                str(obj): {
                    str(f): [{"box": list(d.box), "score": d.score, "phrase": d.phrase} for d in dets]
                    for f, dets in per.items()
                }
                for obj, per in result.items()
            },
        },
    )


def _detect_batch(detector, references, settings, batch) -> list[list[list[Detection]]]:
    """Per reference, the detections of each image of ``batch`` (one detector call per reference)."""
    return [
        detector.detect(
            batch, ref, settings.box_threshold, settings.text_threshold, settings.top_k, settings.detect_batch
        )
        for ref in references
    ]


def detect(
    detector, references, sampled, frames, settings, models, workspace: Workspace, reporter, run_key
) -> dict[int, dict[int, list[Detection]]]:
    """Detections per object id and sampled frame; saved in work/ so a resumed run skips this."""
    saved = saved_detections(references, sampled, settings, models, workspace, run_key)
    if saved is not None:
        return saved
    result: dict[int, dict[int, list[Detection]]] = {}
    with reporter.stage("detection", len(references) * len(sampled)) as stage:
        for i, ref in enumerate(references):
            per_frame: list[list[Detection]] = []
            for b in range(0, len(sampled), settings.detect_batch):
                batch = [frames[f] for f in sampled[b : b + settings.detect_batch]]  # read per batch
                per_frame += _detect_batch(detector, [ref], settings, batch)[0]
                stage.advance(len(batch))
            result[i + 1] = dict(zip(sampled, per_frame, strict=True))
    _save_detections(result, references, sampled, settings, models, workspace, run_key)
    return result


_DONE = object()
#: sampled frames waiting for the detector at most, in detection batches (``decode_and_detect``)
SAMPLE_QUEUE_BATCHES = 2


class Cancelled(Exception):
    """``decode_and_detect`` was asked to stop by another thread (the agent's selection failed)."""


def decode_and_detect(
    video: Video,
    segmenter: Sam2VideoSegmenter,
    sampled: list[int],
    workspace: Workspace,
    reporter: Reporter,
    video_digest: str,
    detector,
    references,
    settings,
    models,
    run_key: str,
    on_sample=None,
    timer=None,
    on_detected=None,
    cancel=None,
):
    """``decode`` and ``detect`` at once: a thread decodes (into the frame store) while this one
    runs the detector on each batch of sampled frames as soon as the batch is decoded. The batches
    are the serial path's (``detect_batch`` consecutive sampled frames), so the detections are the
    same. ``on_sample(index, frame)`` runs here for each sampled frame (e.g. saving the agent's
    images); a sampled frame is dropped once its batch is detected. ``on_detected(ref_id, found)``
    runs here with each reference's detections ``{frame: [Detection]}`` as each batch is done (all
    at once when an interrupted run had saved them). ``cancel`` (a ``threading.Event``) set by
    another thread stops the work: :class:`Cancelled` is raised. Returns (store, detections)."""
    import queue
    import threading
    import time

    store, resumed, mark_done = _open_store(video, segmenter, workspace, video_digest)
    detections = saved_detections(references, sampled, settings, models, workspace, run_key)
    if detections is not None and on_detected is not None:
        for ref_id, found in detections.items():
            on_detected(ref_id, found)
    # sampled frames (full resolution) waiting for the detector: bounded, so that a detector slower than
    # the decoding (a real one: seconds per image) holds the decoding back instead of the video's
    # sampled frames piling up here (one in ten frames at the defaults, 2.6 MiB each at 720p)
    samples: queue.Queue = queue.Queue(maxsize=SAMPLE_QUEUE_BATCHES * max(1, settings.detect_batch))
    stop = threading.Event()  # set when this call ends, so the decoding thread ends with it

    def stopped() -> bool:
        return stop.is_set() or (cancel is not None and cancel.is_set())

    decode_s = [0.0, 0.0]  # the decoding thread's time, and how long it waited for room in the queue

    def put(item) -> None:
        """Into the queue, waiting while it is full; dropped once this call ends (nobody reads it then;
        a cancelled call still reads until it ends, so the end marker gets through)."""
        waited = time.perf_counter()
        try:
            while not stop.is_set():
                try:
                    samples.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
        finally:
            decode_s[1] += time.perf_counter() - waited

    decoded = [0, 0]  # frames decoded (counted by the decode thread), frames shown (by this thread)
    shown: list[Any] = [None]  # the decode stage, while it is open

    def count() -> None:
        decoded[0] += 1

    def show() -> None:
        """The decoding's progress, reported from this thread: a reporter (a LangGraph stream writer,
        a browser's progress bar) belongs to the thread that opened its stage."""
        if shown[0] is not None and decoded[0] > decoded[1]:
            done = decoded[0]
            shown[0].advance(done - decoded[1])
            decoded[1] = done

    def work() -> None:
        started = time.perf_counter()
        try:
            _decode_into(video, segmenter, store, resumed, mark_done, sampled,
                         lambda i, f: put((i, f)), count, stopped)  # fmt: skip
            put(_DONE)
        except BaseException as error:  # raised again in this thread
            put(error)
        finally:
            decode_s[0] = time.perf_counter() - started - decode_s[1]  # the decoding, not the waits

    per_ref: list[list[list[Detection]]] = [[] for _ in references]
    detect_s = 0.0
    batch_size = settings.detect_batch

    def batches():
        """Batches of consecutive sampled frames, each as soon as it is decoded."""
        pending: list[np.ndarray] = []
        while True:
            item = samples.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            index, frame = item
            show()
            if on_sample is not None:
                on_sample(index, frame)
            pending.append((index, frame))
            if len(pending) == batch_size:
                yield pending
                pending = []
        if pending:
            yield pending

    def run(batch, advance=None) -> None:
        nonlocal detect_s
        if stopped():
            raise Cancelled("the decoding and detection were cancelled")
        if detections is not None:  # saved by an interrupted run: only the agent's images are wanted
            return
        t = time.perf_counter()
        found_batch = _detect_batch(detector, references, settings, [frame for _, frame in batch])
        for ref_id, (found, out) in enumerate(zip(found_batch, per_ref, strict=True), start=1):
            out += found
            if on_detected is not None:
                on_detected(ref_id, {index: dets for (index, _), dets in zip(batch, found, strict=True)})
        detect_s += time.perf_counter() - t
        if advance is not None:
            advance(len(batch) * len(references))

    total = len(set(sampled)) if resumed else video.info.num_frames
    thread = None
    try:
        stream = batches()
        with reporter.stage("decode", total) as stage:
            shown[0] = stage
            thread = threading.Thread(target=work, name="alref-decode", daemon=True)
            thread.start()
            for batch in stream:  # detection runs while the decoding goes on, without its own bar
                run(batch)
                if not thread.is_alive():
                    break
            thread.join()
            show()
            shown[0] = None
        rest = list(stream)  # the decoding is over: what is left gets the detection bar
        if rest and detections is None:
            with reporter.stage("detection", sum(len(b) for b in rest) * len(references)) as stage:
                for batch in rest:
                    run(batch, stage.advance)
        if stopped():  # cancelled after the last batch: the decoding may have stopped short
            raise Cancelled("the decoding and detection were cancelled")
    finally:
        stop.set()
        if thread is not None:
            thread.join()
    if detections is None:
        detections = {i + 1: dict(zip(sampled, found, strict=True)) for i, found in enumerate(per_ref)}
        _save_detections(detections, references, sampled, settings, models, workspace, run_key)
    if timer is not None:
        timer.times["decode"] = round(decode_s[0], 3)
        timer.times["detection"] = round(detect_s, 3)
    return store, detections


def propagate_all(
    segmenter,
    store,
    info,
    results: Sequence[ReferenceDecision],
    sink: MaskSink,
    reporter: Reporter,
    refinements: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[int, dict]:
    """Prompt SAM 2 with every valid clip pivot of every reference and propagate once, both ways.
    ``refinements`` (reference id -> a person's prompts ``{frame, points, labels, box}``, in order) are
    given to the session after that reference's boxes (``add_points``); a reference with no valid clip
    starts at its first refinement's frame. Returns, per reference id, where its propagation started
    and why."""
    refinements = refinements or {}
    starts = {r["id"]: dict(zip(("frame", "reason"), start_frame(r["clips"]), strict=True)) for r in results}
    for r in results:
        if starts[r["id"]]["frame"] is None and refinements.get(r["id"]):
            first = refinements[r["id"]][0]["frame"]
            starts[r["id"]] = {
                "frame": first,
                "reason": f"no clip has a pivot; the first refinement's frame ({first})",
            }
    prompted = [r for r in results if starts[r["id"]]["frame"] is not None]
    if prompted:
        session = segmenter.start_session(store, info.height, info.width)
        parts: dict[int, int] = {}  # SAM 2 object id -> the reference it is a part of (extra boxes)
        for ref in prompted:
            for d in ref["clips"]:
                if d["valid"]:
                    session.add_box(d["pivot_frame"], ref["id"], tuple(d["pivot_box"]))
                    for k, box in enumerate(d.get("extra_boxes") or [], start=1):
                        part = EXTRA_OBJECTS * ref["id"] + 100 * d["clip"] + k
                        parts[part] = ref["id"]
                        session.add_box(d["pivot_frame"], part, tuple(box))
            for prompt in refinements.get(ref["id"], ()):
                session.add_points(
                    prompt["frame"], ref["id"], prompt["points"], prompt["labels"], prompt["box"]
                )
        # one propagation serves every object; it starts at the first object's start frame
        first = starts[prompted[0]["id"]]["frame"]
        with reporter.stage("propagation", info.num_frames) as stage:
            for frame, masks in session.propagate(first, progress=stage.advance):
                sink.add(frame, merge_parts(masks, parts))
        for ref in prompted:
            starts[ref["id"]]["propagated_from"] = first
    sink.fill_missing()
    return starts


#: the SAM 2 object ids of a reference's extra boxes (several candidates taken: ``--ambiguous all`` or a
#: person naming several) start at this multiple of the reference's id; their masks join the reference's
EXTRA_OBJECTS = 100_000


def merge_parts(masks: dict[int, Any], parts: dict[int, int]) -> dict[int, Any]:
    """Each extra box's mask joined to its reference's (the union)."""
    if not parts:
        return masks
    merged: dict[int, Any] = {}
    for obj, mask in masks.items():
        owner = parts.get(obj, obj)
        merged[owner] = mask if owner not in merged else (merged[owner] | mask)
    return merged


def remove_frame_store(store: MemmapFrameStore) -> None:
    """The decoded frames only serve an interrupted run; once finished they go (3 MiB/frame at 1024 px)."""
    for leftover in (store.path, store.path.with_suffix(".done")):
        leftover.unlink(missing_ok=True)
