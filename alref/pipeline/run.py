"""One `alref segment` run: decode, detect, choose pivots, propagate, write.

Large arrays never stay in memory for the whole video: one decoding pass writes every frame,
resized to SAM 2's square input, into a uint8 file in ``<out>/work/`` (side² × 3 bytes per frame:
3 MiB at 1024 px; read one frame at a time, never mapped) and keeps only the sampled frames at full
resolution (H × W × 3 bytes each, e.g. 2.6 MiB at 720p, ``samples`` per clip; with the overlap, a
few detection batches of them at a time). Masks are written as they are propagated and their RLE
goes to a temporary file (``MaskSink``): what a run holds grows by a few numbers per frame.

With ``settings.overlap`` (the default) the stages overlap where their data allow: a thread decodes
while the detector runs on each batch of sampled frames as soon as it is decoded; the GPT-PS agent
reasons about a clip as soon as its sampled frames are saved and takes its boxes as soon as their
batch is detected (an :class:`~alref.agent.feed.InputFeed`); the mask PNGs are written by a writer
thread behind a bounded queue (``MaskSink``, 16 frames) while SAM 2 propagates, and overlay.mp4 is
encoded as the masks come. The outputs are the same as with ``overlap=False`` (one stage after
another): the same masks and decisions.

A rerun with the same input, references, settings and models returns the finished result without
recomputing (``force=True`` recomputes); an interrupted run reuses the decoded frames and the
detections it had saved in ``<out>/work/``.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from alref.agent.checkpoint import sqlite_saver
from alref.agent.context import AgentContext
from alref.agent.feed import InputFeed
from alref.agent.llm import LLMClient
from alref.agent.questions import QuestionPending
from alref.agent.select import select_pivots
from alref.config import Settings
from alref.core.records import Reference
from alref.core.workspace import Workspace
from alref.errors import InputError, LLMFallbackError, MediaError, NoAudioError
from alref.media.masks import QUEUE_FRAMES, MaskSink, OverlayStream, write_overlay
from alref.media.sampling import make_clips
from alref.media.video import open_video
from alref.media.writers import atomic_write_json, save_samples
from alref.pipeline import tracks as tracks_strategy
from alref.pipeline.audio import VIDEO_TRACK, AudioRequest, audio_models, plan_audio
from alref.pipeline.keys import digest, video_key
from alref.pipeline.report import (
    SMOKE_NOTE,
    apply_agent_outcome,
    apply_audio_plan,
    build_result,
    finished_result,
    llm_label,
    mode_label,
)
from alref.pipeline.stages import (
    Cancelled,
    decode,
    decode_and_detect,
    detect,
    propagate_all,
    remove_frame_store,
)
from alref.pipeline.verify import apply_verification, make_verifier, pivot_actions
from alref.progress import Relay, Reporter
from alref.tools.registry import Models, resolve_models
from alref.trace.record import Tracer

__all__ = ["Models", "resolve_models", "segment_video"]


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
    chat_model: Any = None,
    audio: AudioRequest | None = None,
    answers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline; returns the result.json content (also written to ``out``).

    With ``settings.ask`` the agent may stop to ask a person (several candidates fit the sentence
    equally): :class:`~alref.agent.questions.QuestionPending` is raised with the questions, after the
    decoding and detection are saved; calling again with ``answers`` ({question id: answer}) continues
    from the checkpoint in ``out/work`` (hours later if need be), recomputing nothing finished.

    With an LLM configured (or ``chat_model``, any LangChain chat model) the pivots are chosen by
    the GPT-PS agent; otherwise by the baseline. With ``audio`` the references come from the sound
    (LBRU) and masks are removed where their object is silent."""
    reporter = reporter or Reporter()
    references = [r.strip() for r in references]
    if audio is None and (not references or any(not r for r in references)):
        raise InputError('a reference must be a non-empty sentence, e.g. "the dog on the left"')
    started = time.perf_counter()
    timer = _Timer()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")

    video = open_video(video_path)
    info = video.info
    tracks_mode = settings.strategy == "tracks"
    if tracks_mode:
        if audio is not None:
            raise InputError(
                "--audio works with --strategy pivot (the default); sound is not a tracks reference yet"
            )
        tracks_strategy.check_references(references)
        models: Any = tracks_strategy.resolve_tracker(settings)
    else:
        models = resolve_models(settings)
    audio_sources = None
    if audio is not None:
        if audio.source == VIDEO_TRACK and not info.has_audio:
            raise NoAudioError(f"{video_path} has no audio track; pass a separate file with --audio PATH")
        if not audio.path(Path(video_path)).exists():
            raise MediaError(f"no such audio file: {audio.source}")
        audio_sources = audio_models(settings)
    identity = {
        "video": video_key(Path(video_path)),
        "references": references,
        "audio": audio.key(Path(video_path)) if audio else None,
        "settings": settings.identity_dict(),
        "models": models.describe()
        | ({"audio": [s.describe() for s in audio_sources]} if audio_sources else {}),
    }
    run_key = digest(identity)
    previous = finished_result(out, run_key)
    if previous is not None and not force:
        reporter.note(
            f"already done: {out / 'result.json'} matches this input and these settings (use --force to redo)"
        )
        return previous

    if not tracks_mode:
        t = time.perf_counter()
        detector = models.load_grounding()
        for (
            reference
        ) in references:  # before anything is written: a sentence the model cannot read is refused
            if hasattr(detector, "check_phrase"):
                detector.check_phrase(reference)
        timer.add("load_models", t)

    out.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(out)
    workspace.work.mkdir(exist_ok=True)
    resumed = _continues_earlier_run(workspace, run_key, force)
    tracer = _start_trace(workspace, settings, resumed)
    tracer.event("run_start", run_key=run_key, resumed=resumed, references=references, input=info.to_dict())
    if tracks_mode:
        result = tracks_strategy.segment_tracks(video, references, out, settings, reporter, chat_model, run_key, models, timer,
                                started, workspace, tracer, answers)  # fmt: skip
        return _finish(result, workspace, tracer, timer, reporter, settings, out)
    ctx = None
    tools = f"{models.grounding_tool.name} + {models.segmentation_tool.name}"
    if chat_model is not None or settings.llm_configured:
        llm = LLMClient(settings, chat_model=chat_model, tracer=tracer)
        ctx = AgentContext(settings=settings, llm=llm, workspace=workspace, tracer=tracer)
        reporter.note(f"mode: agent (GPT-PS with {llm_label(settings, chat_model)}; {tools} tools)")
    else:
        reporter.note(f"mode: baseline ({tools}; no LLM configured)")
    if models.smoke:
        reporter.note(f"note: {SMOKE_NOTE}")

    # open → decode → detect → select pivots → propagate → write
    t = time.perf_counter()
    segmenter = models.load_segmentation(settings)  # the detector is loaded above
    timer.add("load_models", t)

    clips = make_clips(info.num_frames, settings.clip_frames, settings.samples)
    sampled = sorted({f for clip in clips for f in clip["samples"]})

    video_digest = digest(video_key(Path(video_path)))
    plan = None
    results = None
    # the agent reasons while decoding and detection go on; without an agent, detection while decoding
    if settings.overlap and audio is None and ctx is not None:
        refs = [Reference(id=i, text=text, hint_frame=None) for i, text in enumerate(references, start=1)]
        store, detections, results = _decode_detect_and_select(video, segmenter, sampled, clips, refs, workspace, reporter,
                                                               video_digest, detector, settings, models, run_key, ctx,
                                                               tracer, timer, answers)  # fmt: skip
    elif settings.overlap and audio is None:
        store, detections = decode_and_detect(video, segmenter, sampled, workspace, reporter, video_digest, detector,
                                              references, settings, models, run_key, None, timer)  # fmt: skip
    else:
        store, detections, plan = _decode_then_detect(video, video_path, segmenter, sampled, workspace, reporter,
                                                      video_digest, detector, references, settings, models, run_key,
                                                      ctx, audio, audio_sources, timer)  # fmt: skip
        if plan is not None:
            references = plan.references

    hints = plan.hints if plan else {}
    refs = [Reference(id=i, text=text, hint_frame=hints.get(i)) for i, text in enumerate(references, start=1)]
    if results is None:
        t = time.perf_counter()
        results = []
        if refs:
            with reporter.stage("reasoning" if ctx else "selection", len(refs) * len(clips)) as stage:
                results = _select(
                    refs, clips, detections, settings, ctx, workspace, run_key, tracer, stage.advance, answers
                )
        timer.add("selection", t)

    objects = {r["id"]: r["text"] for r in refs}
    palette = {c["id"]: c["palette_index"] for c in plan.categories} if plan else None
    boxes = pivot_boxes(results)
    sound = audio.path(Path(video_path)) if audio is not None else None  # the track overlay.mp4 keeps
    queued = QUEUE_FRAMES if settings.overlap else 0  # PNGs written on a thread while SAM 2 propagates
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(MaskSink(out, info, objects, gate=plan.gate if plan else None,
                                            palette_ids=palette, queue_frames=queued))  # fmt: skip
        stream = None  # overlay.mp4 encoded on a thread as the masks arrive
        if settings.overlay and settings.overlap:
            stream = stack.enter_context(OverlayStream(workspace.overlay, video, sink, boxes, sound))
        t = time.perf_counter()
        starts = propagate_all(segmenter, store, info, results, sink, reporter)
        timer.add("propagation", t)

        t = time.perf_counter()
        sink.write_json()  # waits for the last PNGs
        if settings.overlay:
            with reporter.stage("overlay", info.num_frames) as stage:
                if stream is not None:
                    stream.finish(stage)
                else:
                    write_overlay(workspace.overlay, video, sink, boxes, stage, sound)
        timer.add("writing", t)

    verifier = make_verifier(ctx, settings, video, sink, run_key, reporter, answers)
    if verifier.ctx is not None:
        t = time.perf_counter()
        by_id = {r["id"]: r for r in results}
        act = pivot_actions(results, detections, starts, segmenter, store, sink, reporter, verifier)
        verifier.run({r["id"]: r["text"] for r in results}, act,
                     found=lambda obj: not by_id[obj]["not_found"] and starts[obj]["frame"] is not None)  # fmt: skip
        if verifier.changed:  # masks.json and overlay.mp4 again, with the replaced masks
            sink.write_json()
            if settings.overlay:
                with reporter.stage("overlay", info.num_frames) as stage:
                    write_overlay(workspace.overlay, video, sink, pivot_boxes(results), stage, sound)
        timer.add("verification", t)
    if not settings.keep_work:
        remove_frame_store(store)
    timer.times["total"] = round(time.perf_counter() - started, 3)
    result = build_result(video, settings, models, clips, detections, results, starts, sink, timer, run_key)
    apply_verification(result, verifier)
    if ctx is not None:
        apply_agent_outcome(result, results, ctx.llm, settings, chat_model)
    if plan is not None:
        apply_audio_plan(result, plan, sink, audio_sources)
    return _finish(result, workspace, tracer, timer, reporter, settings, out)


def pivot_boxes(results) -> dict[int, list]:
    """The pivot boxes overlay.mp4 draws: frame -> (box, object id)."""
    boxes: dict[int, list] = {}
    for r in results:
        for d in r["clips"]:
            if d["valid"]:
                boxes.setdefault(d["pivot_frame"], []).append((d["pivot_box"], f"{r['id']}"))
    return boxes


def _decode_then_detect(video, video_path, segmenter, sampled, workspace, reporter, video_digest, detector,
                        references, settings, models, run_key, ctx, audio, audio_sources, timer):  # fmt: skip
    """One stage after another (``overlap=False``, or a sound reference, whose references come from
    the audio plan, which needs the decoded frames). Returns (store, detections, audio plan or None)."""
    t = time.perf_counter()
    store, sampled_frames = decode(video, segmenter, sampled, workspace, reporter, video_digest)
    timer.add("decode", t)
    plan = None
    if audio is not None:
        t = time.perf_counter()
        with reporter.stage("audio", None):
            plan = plan_audio(audio, Path(video_path), video.info, settings, sampled_frames, workspace,
                              audio_sources, models.device, ctx)  # fmt: skip
        references = plan.references
        lbru = plan.report.get("lbru") or {}
        if lbru.get("decided_by") == "fallback":  # as a pivot step that fell back, said where it is seen
            reporter.warn(
                f"naming the sounding objects fell back to the label table: {lbru.get('fallback_reason')}"
            )
        reporter.note(f"sounding objects: {', '.join(c['category'] for c in plan.categories) or 'none'}")
        timer.add("audio", t)
    t = time.perf_counter()
    detections = detect(
        detector, references, sampled, sampled_frames, settings, models, workspace, reporter, run_key
    )
    timer.add("detection", t)
    if ctx is not None:
        save_samples(sampled_frames, workspace.sample)
    return store, detections, plan


def _decode_detect_and_select(video, segmenter, sampled, clips, refs, workspace: Workspace, reporter: Reporter,
                              video_digest, detector, settings: Settings, models, run_key, ctx: AgentContext,
                              tracer, timer, answers=None):  # fmt: skip
    """``decode_and_detect`` and the agent's selection at once (``overlap``, a sentence reference):
    a clip's branch starts as soon as its sampled frames are saved, and takes its boxes when their
    batch is detected, through an :class:`InputFeed`; the detections and so the decisions are the
    serial path's. Both run on threads, their progress drawn here by a :class:`Relay`. Returns
    (store, detections, decisions)."""
    feed = InputFeed()
    cancel = threading.Event()
    relay = Relay(reporter)
    timed: dict[str, float] = {}

    def on_sample(index, frame) -> None:
        save_samples({index: frame}, workspace.sample)
        feed.add_samples([index])

    def produce():
        try:
            return decode_and_detect(video, segmenter, sampled, workspace, relay, video_digest, detector,
                                     [r["text"] for r in refs], settings, models, run_key, on_sample, timer,
                                     feed.add_detections, cancel)  # fmt: skip
        except Cancelled:
            return None  # the selection failed; its error is the one raised
        except BaseException as error:
            feed.close(error)  # the waiting branches end with it; this error is the one raised
            raise
        finally:
            feed.close()

    def choose():
        started = time.perf_counter()
        try:
            with relay.stage("reasoning", len(refs) * len(clips)) as stage:
                return _select(refs, clips, None, settings, replace(ctx, feed=feed), workspace, run_key, tracer,
                               stage.advance, answers)  # fmt: skip
        except QuestionPending:
            raise  # decoding and detection finish and are saved: the answer resumes without them
        except BaseException:
            cancel.set()
            raise
        finally:
            timed["selection"] = round(time.perf_counter() - started, 3)

    def interrupted() -> None:  # Ctrl-C: the decoding stops, and so does the graph at its next node
        cancel.set()
        feed.close(KeyboardInterrupt("interrupted"))

    decoded, results = relay.run(produce, choose, cancel=interrupted)
    timer.times["selection"] = timed["selection"]
    store, detections = decoded
    return store, detections, results


def _finish(result, workspace: Workspace, tracer, timer, reporter: Reporter, settings: Settings, out: Path):
    """Write result.json, close the trace, and say (or, with --strict-llm, fail on) LLM fallbacks."""
    atomic_write_json(workspace.result, result)
    tracer.event("run_end", status=result["status"], mode=mode_label(result), timings_s=timer.times,
                 llm=result.get("llm"), llm_decisions=result.get("llm_decisions"))  # fmt: skip
    decisions = result.get("llm_decisions") or {}
    one, many = (
        ("clip", "clips") if result.get("strategy", "pivot") == "pivot" else ("reference", "references")
    )
    if decisions.get("fell_back") and decisions["fell_back"] == decisions["clips"]:
        reporter.warn(
            f"no LLM decision was used: every {one} fell back to the baseline ({decisions['reason']})"
        )
    if settings.strict_llm and decisions.get("fell_back"):
        raise LLMFallbackError(
            f"--strict-llm: {decisions['fell_back']} of {decisions['clips']} {many} fell back to the baseline "
            f"({decisions['reason']}); the outputs are written in {out}"
        )
    return result


def _select(
    refs, clips, detections, settings, ctx, workspace: Workspace, run_key, tracer, advance, answers=None
):
    """The agent's selection, checkpointed in work/agent.sqlite under the run's identity, or the baseline."""
    if ctx is None:
        return select_pivots(refs, clips, detections, settings, None, on_clip=advance, tracer=tracer)
    with sqlite_saver(workspace.checkpoint) as saver:
        return select_pivots(refs, clips, detections, settings, ctx, checkpointer=saver, thread_id=run_key,
                             on_clip=advance, resume=answers)  # fmt: skip


def _continues_earlier_run(workspace: Workspace, run_key: str, force: bool) -> bool:
    """True when ``work/`` holds an unfinished run of this exact input; otherwise its agent
    checkpoint is dropped so the graph starts over (``force`` always starts over)."""
    marker = workspace.run_key
    same = not force and marker.is_file() and marker.read_text().strip() == run_key
    if not same:
        workspace.checkpoint.unlink(missing_ok=True)
        marker.write_text(run_key)
    return same


def _start_trace(workspace: Workspace, settings: Settings, resumed: bool) -> Tracer:
    """A resumed run appends to its trace; a new run starts a new one."""
    if not resumed:
        shutil.rmtree(workspace.trace, ignore_errors=True)
    return Tracer(workspace.trace, secrets=[settings.api_key] if settings.api_key else [])
