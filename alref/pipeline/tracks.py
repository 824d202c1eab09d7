"""One `alref segment --strategy tracks` run, in a straight line: open → decode (into SAM 3's frame
store) → decide (the tracks graph with an LLM, else the top SAM 3 track) → write the union of each
reference's accepted tracks. SAM 3 runs once per concept; its tracks are kept as RLE in
``OUT/work/tracks/`` so a resumed run does not track again."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alref.agent.checkpoint import sqlite_saver
from alref.agent.context import AgentContext
from alref.agent.llm import LLMClient
from alref.agent.tracks.select import select_tracks
from alref.config import Settings
from alref.core.baseline import concept_of
from alref.core.records import Reference, TrackDecision
from alref.core.workspace import Workspace
from alref.errors import InputError
from alref.media.masks import QUEUE_FRAMES, MaskSink, write_overlay
from alref.media.sampling import make_clips
from alref.media.writers import save_samples
from alref.progress import Reporter
from alref.tools.loading import ModelSource
from alref.tools.registry import ToolSpec, model_source, select
from alref.tools.video_tracks import VideoTracks


@dataclass
class TrackModels:
    """The concept tracker a tracks run uses (what result.json's ``models`` shows)."""

    tool: ToolSpec
    source: ModelSource | None
    device: str

    @property
    def smoke(self) -> bool:
        return self.source is not None and self.source.smoke

    def describe(self) -> dict[str, Any]:
        return {"concept_tracks": self.tool.describe() | (self.source.describe() if self.source else {})}


def resolve_tracker(settings: Settings) -> TrackModels:
    from alref.tools.loading import resolve_device

    tool = select("concept_tracks", None)
    return TrackModels(tool, model_source(tool, settings), resolve_device(settings.device))


def check_references(references: list[str]) -> None:
    """A sentence that names no object cannot become a concept: one line, before anything is written."""
    for ref in references:
        if not concept_of(ref):
            raise InputError(
                f'the reference "{ref}" names no object to track; say what it is, e.g. "the dog that jumps"'
            )


def write_masks(decisions: list[TrackDecision], source: VideoTracks, sink: MaskSink, num_frames: int,
                reporter: Reporter) -> None:  # fmt: skip
    """Each reference's mask: the union of its accepted tracks, on every frame."""
    with reporter.stage("masks", num_frames) as stage:
        for frame in range(num_frames):
            masks = {}
            for d in decisions:
                union = union_mask(d, source, frame)
                if union is not None:
                    masks[d["id"]] = union
            sink.add(frame, masks)
            stage.advance()


def union_mask(decision: TrackDecision, source: VideoTracks, frame: int) -> Any:
    """The union of the decision's accepted tracks on ``frame`` (None where none of them is)."""
    union = None
    for tid in decision["accepted"]:
        t = next(t for t in decision["candidates"] if t["id"] == tid)
        if frame in t["frames"]:
            m = source.mask(decision["concept"], tid, frame)
            union = m if union is None else (union | m)
    return union


def decide(refs: list[Reference], settings: Settings, source: VideoTracks, ctx: AgentContext | None,
           workspace: Workspace, run_key: str, tracer: Any, advance: Any, answers: Any = None) -> list[TrackDecision]:  # fmt: skip
    if ctx is None:
        return select_tracks(refs, settings, source, None, on_reference=advance, tracer=tracer)
    with sqlite_saver(workspace.checkpoint) as saver:
        return select_tracks(refs, settings, source, ctx, checkpointer=saver, thread_id=run_key,
                             on_reference=advance, resume=answers)  # fmt: skip


def segment_tracks(video: Any, references: list[str], out: Path, settings: Settings, reporter: Reporter,
                   chat_model: Any, run_key: str, models: TrackModels, timer: Any, started: float,
                   workspace: Workspace, tracer: Any, answers: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The tracks strategy after the run's identity, workspace and trace are set up (see run.py)."""
    from alref.pipeline.report import apply_tracks_outcome, build_tracks_result, llm_label
    from alref.pipeline.stages import decode, remove_frame_store
    from alref.pipeline.verify import apply_verification, make_verifier, tracks_actions

    info = video.info
    llm = None
    if chat_model is not None or settings.llm_configured:
        llm = LLMClient(settings, chat_model=chat_model, tracer=tracer)
        reporter.note(
            f"mode: agent (track reasoning with {llm_label(settings, chat_model)}; SAM 3 concept tracks)"
        )
    else:
        reporter.note("mode: baseline (the top SAM 3 track of the sentence's concept; no LLM configured)")
    t = time.perf_counter()
    tracker = models.tool.load(models.source, models.device, precision=settings.precision)
    timer.add("load_models", t)
    if skipped := getattr(tracker, "skipped_postprocessing", None):  # instead of transformers' warning
        reporter.note(skipped)
    clips = make_clips(info.num_frames, settings.clip_frames, settings.samples)
    sampled = sorted({f for c in clips for f in c["samples"]})
    t = time.perf_counter()
    store, sampled_frames = decode(video, tracker, sampled, workspace, reporter, run_key)
    timer.add("decode", t)
    if llm is not None:
        save_samples(sampled_frames, workspace.sample)
    del sampled_frames
    source = VideoTracks(tracker, store, video, workspace, reporter, run_key)
    ctx = None if llm is None else AgentContext(settings=settings, llm=llm, workspace=workspace, tracer=tracer,
                                                tools=source)  # fmt: skip
    refs = [Reference(id=i, text=text) for i, text in enumerate(references, start=1)]
    t = time.perf_counter()
    with reporter.stage("reasoning" if ctx else "selection", len(refs)) as stage:
        decisions = decide(refs, settings, source, ctx, workspace, run_key, tracer, stage.advance, answers)
    timer.add("selection", t)
    timer.times["tracking"] = round(source.tracking_s, 3)  # of the selection: SAM 3 itself
    queued = QUEUE_FRAMES if settings.overlap else 0  # PNGs written on a thread while the masks are made
    with MaskSink(out, info, {r["id"]: r["text"] for r in refs}, queue_frames=queued) as sink:
        t = time.perf_counter()
        write_masks(decisions, source, sink, info.num_frames, reporter)
        sink.write_json()  # waits for the last PNGs
        if settings.overlay:
            with reporter.stage("overlay", info.num_frames) as stage:
                write_overlay(workspace.overlay, video, sink, {}, stage)
        timer.add("writing", t)
    verifier = make_verifier(ctx, settings, video, sink, run_key, reporter, answers)
    if verifier.ctx is not None:
        t = time.perf_counter()
        act = tracks_actions(decisions, lambda d, f: union_mask(d, source, f), ctx, sink, run_key, answers)
        place = {d["id"]: i for i, d in enumerate(decisions)}  # the actions replace decisions in place

        def found(obj: int) -> bool:
            decision = decisions[place[obj]]
            return not decision["not_found"] and bool(decision["accepted"])

        verifier.run({r["id"]: r["text"] for r in refs}, act,
                     found=found)  # fmt: skip
        if verifier.changed:  # masks.json and overlay.mp4 again, with the replaced masks
            sink.write_json()
            if settings.overlay:
                with reporter.stage("overlay", info.num_frames) as stage:
                    write_overlay(workspace.overlay, video, sink, {}, stage)
        timer.add("verification", t)
    if not settings.keep_work:
        remove_frame_store(store)
    timer.times["total"] = round(time.perf_counter() - started, 3)
    result = build_tracks_result(video, settings, models, decisions, sink, timer, run_key)
    apply_verification(result, verifier)
    if ctx is not None:
        apply_tracks_outcome(result, decisions, ctx.llm, settings, chat_model)
    return result
