"""The stages of a run that touch frames and models: one decoding pass, detection on the sampled
frames, and SAM 2 propagation of the decided pivots.

Memory: one decoding pass writes every frame, resized to SAM 2's square input, into a uint8 memmap
in ``<out>/work/`` (side² × 3 bytes per frame: 3 MiB at 1024 px) and keeps only the sampled frames
at full resolution (H × W × 3 bytes each, e.g. 2.6 MiB at 720p, ``samples`` per clip).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from alref.core.baseline import start_frame
from alref.core.records import Detection, ReferenceDecision
from alref.core.workspace import Workspace
from alref.media.masks import MaskSink
from alref.media.video import Video
from alref.media.writers import atomic_write_json
from alref.pipeline.keys import digest
from alref.progress import Reporter
from alref.tools.segmentation import MemmapFrameStore, Sam2VideoSegmenter


def decode(
    video: Video,
    segmenter: Sam2VideoSegmenter,
    sampled: list[int],
    workspace: Workspace,
    reporter: Reporter,
    video_digest: str,
):
    info = video.info
    side = segmenter.image_size
    store_path = workspace.frame_store(side)
    done_marker = workspace.frame_store_done(side)
    wanted = set(sampled)
    store = MemmapFrameStore(store_path, info.num_frames, side)
    keep: dict[int, np.ndarray] = {}
    marker = {
        "video": video_digest,
        "num_frames": info.num_frames,
        "side": side,
        "segmenter": type(segmenter).__name__,
    }
    resumed = store.reopened and done_marker.is_file() and json.loads(done_marker.read_text()) == marker
    if resumed:  # the SAM 2 frames are on disk from an interrupted run: decode only the sampled frames
        with reporter.stage("decode", len(wanted)) as stage:
            for index, frame in video.iter_frames(sampled):
                keep[index] = frame
                stage.advance()
        return store, keep
    with reporter.stage("decode", info.num_frames) as stage:
        for index, frame in video.iter_frames():
            store[index] = segmenter.prepare_frame(frame)
            if index in wanted:
                keep[index] = frame
            stage.advance()
    store.flush()
    done_marker.write_text(json.dumps(marker))
    return store, keep


def detect(
    detector, references, sampled, frames, settings, models, workspace: Workspace, reporter, run_key
) -> dict[int, dict[int, list[Detection]]]:
    """Detections per object id and sampled frame; saved in work/ so a resumed run skips this."""
    cache = workspace.detections
    key = digest(
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
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return {
                int(obj): {
                    int(f): [Detection(tuple(d["box"]), d["score"], d["phrase"]) for d in dets]
                    for f, dets in per.items()
                }
                for obj, per in saved["detections"].items()
            }
    images = [frames[f] for f in sampled]
    result: dict[int, dict[int, list[Detection]]] = {}
    with reporter.stage("detection", len(references) * len(sampled)) as stage:
        for i, ref in enumerate(references):
            per_frame: list[list[Detection]] = []
            for b in range(0, len(images), settings.detect_batch):
                batch = images[b : b + settings.detect_batch]
                per_frame += detector.detect(
                    batch,
                    ref,
                    settings.box_threshold,
                    settings.text_threshold,
                    settings.top_k,
                    settings.detect_batch,
                )
                stage.advance(len(batch))
            result[i + 1] = dict(zip(sampled, per_frame, strict=True))
    atomic_write_json(
        cache,
        {
            "key": key,
            "detections": {
                str(obj): {
                    str(f): [{"box": list(d.box), "score": d.score, "phrase": d.phrase} for d in dets]
                    for f, dets in per.items()
                }
                for obj, per in result.items()
            },
        },
    )
    return result


def propagate_all(
    segmenter, store, info, results: Sequence[ReferenceDecision], sink: MaskSink, reporter: Reporter
) -> dict[int, dict]:
    """Prompt SAM 2 with every valid clip pivot of every reference and propagate once, both ways.
    Returns, per reference id, where its propagation started and why."""
    starts = {r["id"]: dict(zip(("frame", "reason"), start_frame(r["clips"]), strict=True)) for r in results}
    prompted = [r for r in results if starts[r["id"]]["frame"] is not None]
    if prompted:
        session = segmenter.start_session(store, info.height, info.width)
        for ref in prompted:
            for d in ref["clips"]:
                if d["valid"]:
                    session.add_box(d["pivot_frame"], ref["id"], tuple(d["pivot_box"]))
        # one propagation serves every object; it starts at the first object's start frame
        first = starts[prompted[0]["id"]]["frame"]
        with reporter.stage("propagation", info.num_frames) as stage:
            for frame, masks in session.propagate(first, progress=stage.advance):
                sink.add(frame, masks)
        for ref in prompted:
            starts[ref["id"]]["propagated_from"] = first
    sink.fill_missing()
    return starts


def remove_frame_store(store: MemmapFrameStore) -> None:
    """The decoded frames only serve an interrupted run; once finished they go (3 MiB/frame at 1024 px)."""
    for leftover in (store.path, store.path.with_suffix(".done")):
        leftover.unlink(missing_ok=True)
