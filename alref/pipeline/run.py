"""One `alref segment` run: decode, detect, choose pivots, propagate, write.

Large arrays never stay in memory for the whole video: one decoding pass writes every frame,
resized to SAM 2's square input, into a uint8 memmap in ``<out>/work/`` (side² × 3 bytes per frame:
3 MiB at 1024 px) and keeps only the sampled frames at full resolution (H × W × 3 bytes each, e.g.
2.6 MiB at 720p, ``samples`` per clip). Masks are written as they are propagated and kept as RLE.

A rerun with the same input, references, settings and models returns the finished result without
recomputing (``force=True`` recomputes); an interrupted run reuses the decoded frames and the
detections it had saved in ``<out>/work/``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import alref
from alref.config import Settings
from alref.errors import InputError
from alref.media.sampling import Clip, make_clips
from alref.media.video import Video, open_video
from alref.media.writers import atomic_write_json
from alref.pipeline.baseline import ClipPivot, choose_pivot, start_frame
from alref.pipeline.outputs import MaskSink, write_overlay
from alref.progress import Reporter
from alref.tools.grounding import Detection, GroundingDetector
from alref.tools.loading import ModelSource, model_name, resolve, resolve_device
from alref.tools.segmentation import MemmapFrameStore, Sam2VideoSegmenter

SMOKE_NOTE = "made with the smoke profile: tiny random-weight models, the masks are meaningless"


@dataclass
class Models:
    grounding: ModelSource
    segmentation: ModelSource
    device: str

    @property
    def smoke(self) -> bool:
        return self.grounding.smoke or self.segmentation.smoke

    def describe(self) -> dict[str, Any]:
        return {"grounding": self.grounding.describe(), "segmentation": self.segmentation.describe()}


def resolve_models(settings: Settings) -> Models:
    """Find (and for smoke, build) both models before any decoding, so a missing one fails fast."""
    device = resolve_device(settings.device)
    return Models(
        grounding=resolve(model_name(settings, "grounding"), "grounding", settings),
        segmentation=resolve(model_name(settings, "segmentation"), "segmentation", settings),
        device=device,
    )


def _file_key(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _video_key(path: Path) -> dict[str, Any]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return {
            "path": str(path.resolve()),
            "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        }
    return _file_key(path)


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def add(self, name: str, start: float) -> None:
        self.times[name] = round(self.times.get(name, 0.0) + time.perf_counter() - start, 3)


def segment_video(
    video_path: str | Path,
    references: Sequence[str],
    out: str | Path,
    settings: Settings,
    reporter: Reporter | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run the whole pipeline; returns the result.json content (also written to ``out``)."""
    reporter = reporter or Reporter()
    references = [r.strip() for r in references]
    if not references or any(not r for r in references):
        raise InputError('a reference must be a non-empty sentence, e.g. "the dog on the left"')
    started = time.perf_counter()
    timer = _Timer()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")

    video = open_video(video_path)
    info = video.info
    models = resolve_models(settings)
    run_key = _digest(
        {
            "video": _video_key(Path(video_path)),
            "references": references,
            "settings": settings.public_dict() | {"cache_dir": None},
            "models": models.describe(),
        }
    )
    previous = _finished_result(out, run_key)
    if previous is not None and not force:
        reporter.note(
            f"already done: {out / 'result.json'} matches this input and these settings (use --force to redo)"
        )
        return previous

    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    reporter.note("mode: baseline (GroundingDINO + SAM 2; no LLM configured)")
    if models.smoke:
        reporter.note(f"note: {SMOKE_NOTE}")

    t = time.perf_counter()
    detector = GroundingDetector.load(models.grounding, models.device)
    segmenter = Sam2VideoSegmenter.load(
        models.segmentation, models.device, settings.precision, settings.offload_video, settings.offload_state
    )
    timer.add("load_models", t)

    clips = make_clips(info.num_frames, settings.clip_frames, settings.samples)
    sampled = sorted({f for clip in clips for f in clip.samples})

    # one decoding pass: SAM 2 frames to the memmap, sampled frames kept for detection
    t = time.perf_counter()
    store, sampled_frames = _decode(
        video, segmenter, sampled, work, reporter, _digest(_video_key(Path(video_path)))
    )
    timer.add("decode", t)

    t = time.perf_counter()
    detections = _detect(
        detector, references, sampled, sampled_frames, settings, models, work, reporter, run_key
    )
    del sampled_frames
    timer.add("detection", t)

    pivots = {obj: [choose_pivot(c, detections[obj], settings.pivot) for c in clips] for obj in detections}

    t = time.perf_counter()
    objects = {i + 1: ref for i, ref in enumerate(references)}
    sink = MaskSink(out, info, objects)
    starts = _propagate(segmenter, store, info, pivots, sink, reporter)
    timer.add("propagation", t)

    t = time.perf_counter()
    sink.write_json()
    boxes: dict[int, list] = {}
    for obj, clip_pivots in pivots.items():
        for p in clip_pivots:
            if p.valid:
                boxes.setdefault(p.frame, []).append((p.box, f"{obj}"))
    if settings.overlay:
        with reporter.stage("overlay", info.num_frames) as stage:
            write_overlay(out / "overlay.mp4", video, sink, boxes, stage)
    timer.add("writing", t)

    if not settings.keep_work:
        _remove_frame_store(store, work)
    timer.times["total"] = round(time.perf_counter() - started, 3)
    result = _result(
        video, references, settings, models, clips, detections, pivots, starts, sink, timer, run_key
    )
    atomic_write_json(out / "result.json", result)
    return result


def _decode(
    video: Video,
    segmenter: Sam2VideoSegmenter,
    sampled: list[int],
    work: Path,
    reporter: Reporter,
    video_digest: str,
):
    info = video.info
    side = segmenter.image_size
    store_path = work / f"frames_{side}.u8"
    done_marker = work / f"frames_{side}.done"
    wanted = set(sampled)
    store = MemmapFrameStore(store_path, info.num_frames, side)
    keep: dict[int, np.ndarray] = {}
    marker = {"video": video_digest, "num_frames": info.num_frames, "side": side}
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


def _detect(
    detector, references, sampled, frames, settings, models, work, reporter, run_key
) -> dict[int, dict[int, list[Detection]]]:
    """Detections per object id and sampled frame; saved in work/ so a resumed run skips this."""
    cache = work / "detections.json"
    key = _digest(
        [
            run_key,
            references,
            settings.box_threshold,
            settings.text_threshold,
            settings.top_k,
            sampled,
            models.grounding.revision,
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


def _propagate(
    segmenter, store, info, pivots: dict[int, list[ClipPivot]], sink: MaskSink, reporter: Reporter
) -> dict[int, dict]:
    """Prompt SAM 2 with every valid clip pivot of every object and propagate once, both ways."""
    starts = {obj: dict(zip(("frame", "reason"), start_frame(p), strict=True)) for obj, p in pivots.items()}
    prompted = [obj for obj in pivots if starts[obj]["frame"] is not None]
    if prompted:
        session = segmenter.start_session(store, info.height, info.width)
        for obj in prompted:
            for p in pivots[obj]:
                if p.valid:
                    session.add_box(p.frame, obj, p.box)
        # one propagation serves every object; it starts at the first object's start frame
        first = starts[prompted[0]]["frame"]
        with reporter.stage("propagation", info.num_frames) as stage:
            for frame, masks in session.propagate(first, progress=stage.advance):
                sink.add(frame, masks)
        for obj in prompted:
            starts[obj]["propagated_from"] = first
    sink.fill_missing()
    return starts


def _remove_frame_store(store: MemmapFrameStore, work: Path) -> None:
    """The decoded frames only serve an interrupted run; once finished they go (3 MiB/frame at 1024 px)."""
    for leftover in (store.path, store.path.with_suffix(".done")):
        leftover.unlink(missing_ok=True)


def _finished_result(out: Path, run_key: str) -> dict[str, Any] | None:
    path = out / "result.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("run_key") != run_key:
        return None
    needed = [out / "masks.json", out / "masks"] + (
        [out / "overlay.mp4"] if data.get("outputs", {}).get("overlay") else []
    )
    return data if all(p.exists() for p in needed) else None


def _result(
    video, references, settings, models, clips: list[Clip], detections, pivots, starts, sink, timer, run_key
):
    refs = []
    for obj, ref in enumerate(references, start=1):
        found = starts[obj]["frame"] is not None
        refs.append(
            {
                "id": obj,
                "text": ref,
                "status": "ok" if found else "not_found",
                "reason": starts[obj]["reason"]
                if found
                else "no candidate box in any sampled frame of any clip",
                "start_frame": starts[obj]["frame"],
                "propagated_from": starts[obj].get("propagated_from"),
                "clips": [p.to_dict(detections[obj]) for p in pivots[obj]],
                "masks": sink.summary(obj),
            }
        )
    found = sum(r["status"] == "ok" for r in refs)
    status = "ok" if found == len(refs) else ("not_found" if found == 0 else "partial")
    result: dict[str, Any] = {
        "alref_version": alref.__version__,
        "status": status,
        "mode": "baseline",
        "mode_reason": "no LLM configured: GroundingDINO + SAM 2 baseline decisions",
        "smoke": models.smoke,
    }
    if models.smoke:
        result["smoke_note"] = SMOKE_NOTE
    result |= {
        "input": video.info.to_dict(),
        "references": refs,
        "clips": [
            {"index": c.index, "start": c.start, "end": c.end, "samples": list(c.samples)} for c in clips
        ],
        "settings": settings.public_dict(),
        "models": models.describe(),
        "device": models.device,
        "timings_s": timer.times,
        "outputs": {
            "masks": "masks",
            "masks_json": "masks.json",
            "objects": "objects" if sink.multi else None,
            "palette": "palette" if sink.multi else None,
            "overlay": "overlay.mp4" if settings.overlay else None,
            "result": "result.json",
        },
        "environment": {"python": platform.python_version(), "platform": platform.platform()},
        "run_key": run_key,
    }
    return result
