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

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alref.agent.run import run_agent
from alref.config import Settings
from alref.errors import InputError, MediaError, NoAudioError
from alref.media.sampling import make_clips
from alref.media.video import open_video
from alref.media.writers import atomic_write_json
from alref.pipeline.audio import VIDEO_TRACK, AudioRequest, audio_models, plan_audio
from alref.pipeline.baseline import ClipPivot, choose_pivot
from alref.pipeline.keys import digest, video_key
from alref.pipeline.outputs import MaskSink, write_overlay
from alref.pipeline.report import (
    SMOKE_NOTE,
    apply_agent_outcome,
    apply_audio_plan,
    build_result,
    finished_result,
    llm_label,
    llm_usage,
)
from alref.pipeline.stages import decode, detect, propagate_all, remove_frame_store, save_samples
from alref.progress import Reporter
from alref.tools.loading import ModelSource, resolve_device
from alref.tools.registry import ToolSpec, model_source, select
from alref.trace.record import Tracer


@dataclass
class Models:
    grounding: ModelSource | None  # None: the tool has no model
    segmentation: ModelSource | None
    device: str
    grounding_tool: ToolSpec
    segmentation_tool: ToolSpec

    @property
    def smoke(self) -> bool:
        return any(s is not None and s.smoke for s in (self.grounding, self.segmentation))

    def describe(self) -> dict[str, Any]:
        def one(tool: ToolSpec, source: ModelSource | None) -> dict[str, Any]:
            return tool.describe() | (source.describe() if source else {})

        return {
            "grounding": one(self.grounding_tool, self.grounding),
            "segmentation": one(self.segmentation_tool, self.segmentation),
        }


def resolve_models(settings: Settings) -> Models:
    """Pick the tools (built-in or plugins) and find their models before any decoding, so a missing
    model fails fast."""
    device = resolve_device(settings.device)
    grounding, segmentation = (
        select("grounding", settings.grounding),
        select("segmentation", settings.segmentation),
    )
    return Models(
        model_source(grounding, settings),
        model_source(segmentation, settings),
        device,
        grounding,
        segmentation,
    )


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
) -> dict[str, Any]:
    """Run the whole pipeline; returns the result.json content (also written to ``out``).

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
        "settings": settings.public_dict() | {"cache_dir": None},
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

    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    resumed = _continues_earlier_run(work, run_key, force)
    tracer = _start_trace(out, settings, resumed)
    tracer.event("run_start", run_key=run_key, resumed=resumed, references=references, input=info.to_dict())
    ctx = (
        _agent_context(settings, chat_model, tracer, work)
        if (chat_model is not None or settings.llm_configured)
        else None
    )
    if ctx is not None:
        reporter.note(
            f"mode: agent (GPT-PS with {llm_label(settings, chat_model)}; GroundingDINO + SAM 2 tools)"
        )
    else:
        reporter.note("mode: baseline (GroundingDINO + SAM 2; no LLM configured)")
    if models.smoke:
        reporter.note(f"note: {SMOKE_NOTE}")

    t = time.perf_counter()
    detector = models.grounding_tool.load(models.grounding, models.device)
    segmenter = models.segmentation_tool.load(
        models.segmentation, models.device, precision=settings.precision,
        offload_video=settings.offload_video, offload_state=settings.offload_state,
    )  # fmt: skip
    timer.add("load_models", t)

    clips = make_clips(info.num_frames, settings.clip_frames, settings.samples)
    sampled = sorted({f for clip in clips for f in clip.samples})

    # one decoding pass: SAM 2 frames to the memmap, sampled frames kept for detection
    t = time.perf_counter()
    store, sampled_frames = decode(
        video, segmenter, sampled, work, reporter, digest(video_key(Path(video_path)))
    )
    timer.add("decode", t)

    plan = None
    if audio is not None:
        t = time.perf_counter()
        with reporter.stage("audio", None):
            plan = plan_audio(audio, Path(video_path), info, settings, sampled_frames, work, audio_sources,
                              models.device, ctx)  # fmt: skip
        references = plan.references
        reporter.note(f"sounding objects: {', '.join(c['category'] for c in plan.categories) or 'none'}")
        timer.add("audio", t)

    t = time.perf_counter()
    detections = detect(
        detector, references, sampled, sampled_frames, settings, models, work, reporter, run_key
    )
    timer.add("detection", t)
    if ctx is not None:
        save_samples(sampled_frames, work / "samples")
    del sampled_frames

    objects = {i + 1: ref for i, ref in enumerate(references)}
    palette = {c["id"]: c["palette_index"] for c in plan.categories} if plan else None
    sink = MaskSink(out, info, objects, gate=plan.gate if plan else None, palette_ids=palette)

    def propagate(pivots: dict[int, list[ClipPivot]]) -> dict[int, dict]:
        t = time.perf_counter()
        starts = propagate_all(segmenter, store, info, pivots, sink, reporter)
        timer.add("propagation", t)
        return starts

    not_found: dict[int, str] = {}
    if ctx is not None and references:
        t = time.perf_counter()
        ctx.detections, ctx.propagate = detections, propagate
        with reporter.stage("reasoning", len(references) * len(clips)) as stage:
            ctx.clip_done = stage.advance
            outcome = run_agent(
                ctx, references, clips, work / "agent.sqlite", run_key, hints=plan.hints if plan else None
            )
        pivots, not_found, starts = outcome["pivots"], outcome["not_found"], outcome["starts"]
        timer.add("selection", t + timer.times.get("propagation", 0.0))  # reasoning time, without SAM 2
    else:
        pivots = {
            obj: [choose_pivot(c, detections[obj], settings.pivot) for c in clips] for obj in detections
        }
        for obj, clip_pivots in pivots.items():
            for p in clip_pivots:
                tracer.event("clip_decided", ref=obj, clip=p.clip.index, valid=p.valid, pivot_frame=p.frame,
                             pivot_box=p.box, decided_by="baseline", reason=p.reason)  # fmt: skip
        starts = propagate(pivots)

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
        remove_frame_store(store, work)
    timer.times["total"] = round(time.perf_counter() - started, 3)
    result = build_result(
        video, references, settings, models, clips, detections, pivots, starts, sink, timer, run_key
    )
    if ctx is not None:
        apply_agent_outcome(result, not_found, llm_usage(tracer, ctx.llm), settings, chat_model)
    if plan is not None:
        apply_audio_plan(result, plan, sink, audio_sources)
    atomic_write_json(out / "result.json", result)
    tracer.event("run_end", status=result["status"], timings_s=timer.times)
    return result


def _continues_earlier_run(work: Path, run_key: str, force: bool) -> bool:
    """True when ``work/`` holds an unfinished run of this exact input; otherwise its agent
    checkpoint is dropped so the graph starts over (``force`` always starts over)."""
    marker = work / "run_key"
    same = not force and marker.is_file() and marker.read_text().strip() == run_key
    if not same:
        (work / "agent.sqlite").unlink(missing_ok=True)
        marker.write_text(run_key)
    return same


def _start_trace(out: Path, settings: Settings, resumed: bool) -> Tracer:
    """A resumed run appends to its trace; a new run starts a new one."""
    if not resumed:
        shutil.rmtree(out / "trace", ignore_errors=True)
    return Tracer(out / "trace", secrets=[settings.api_key] if settings.api_key else [])


def _agent_context(settings: Settings, chat_model: Any, tracer: Tracer, work: Path):
    from alref.agent.context import AgentContext
    from alref.agent.llm import LLMClient

    llm = LLMClient(settings, chat_model=chat_model, tracer=tracer)
    return AgentContext(
        settings=settings,
        llm=llm,
        detections={},
        samples_dir=work / "samples",
        work=work / "agent",
        tracer=tracer,
    )
