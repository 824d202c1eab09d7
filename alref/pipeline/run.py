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

from alref.agent.trace import Tracer
from alref.config import Settings
from alref.errors import InputError
from alref.media.sampling import make_clips
from alref.media.video import open_video
from alref.media.writers import atomic_write_json
from alref.pipeline.baseline import ClipPivot, choose_pivot
from alref.pipeline.keys import digest, video_key
from alref.pipeline.outputs import MaskSink, write_overlay
from alref.pipeline.report import (
    SMOKE_NOTE,
    apply_agent_outcome,
    build_result,
    finished_result,
    llm_label,
    llm_usage,
)
from alref.pipeline.stages import decode, detect, propagate_all, remove_frame_store, save_samples
from alref.progress import Reporter
from alref.tools.grounding import GroundingDetector
from alref.tools.loading import ModelSource, model_name, resolve, resolve_device
from alref.tools.segmentation import Sam2VideoSegmenter


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
) -> dict[str, Any]:
    """Run the whole pipeline; returns the result.json content (also written to ``out``).

    With an LLM configured (or ``chat_model``, any LangChain chat model) the pivots are chosen by
    the GPT-PS agent; otherwise by the baseline."""
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
    run_key = digest(
        {
            "video": video_key(Path(video_path)),
            "references": references,
            "settings": settings.public_dict() | {"cache_dir": None},
            "models": models.describe(),
        }
    )
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
    agent = chat_model is not None or settings.llm_configured
    if agent:
        reporter.note(
            f"mode: agent (GPT-PS with {llm_label(settings, chat_model)}; GroundingDINO + SAM 2 tools)"
        )
    else:
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
    store, sampled_frames = decode(
        video, segmenter, sampled, work, reporter, digest(video_key(Path(video_path)))
    )
    timer.add("decode", t)

    t = time.perf_counter()
    detections = detect(
        detector, references, sampled, sampled_frames, settings, models, work, reporter, run_key
    )
    timer.add("detection", t)
    if agent:
        save_samples(sampled_frames, work / "samples")
    del sampled_frames

    sink = MaskSink(out, info, {i + 1: ref for i, ref in enumerate(references)})

    def propagate(pivots: dict[int, list[ClipPivot]]) -> dict[int, dict]:
        t = time.perf_counter()
        starts = propagate_all(segmenter, store, info, pivots, sink, reporter)
        timer.add("propagation", t)
        return starts

    not_found: dict[int, str] = {}
    llm_summary = None
    if agent:
        t = time.perf_counter()
        outcome, llm_summary = _select_with_agent(
            settings, chat_model, tracer, detections, references, clips, work, run_key, propagate, reporter
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
    apply_agent_outcome(result, not_found, llm_summary, settings, chat_model)
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


def _select_with_agent(
    settings, chat_model, tracer, detections, references, clips, work, run_key, propagate, reporter
):
    from alref.agent.context import AgentContext
    from alref.agent.llm import LLMClient
    from alref.agent.run import run_agent

    llm = LLMClient(settings, chat_model=chat_model, tracer=tracer)
    with reporter.stage("reasoning", len(references) * len(clips)) as stage:
        ctx = AgentContext(
            settings=settings, llm=llm, detections=detections, samples_dir=work / "samples", work=work / "agent",
            propagate=propagate, tracer=tracer, clip_done=stage.advance,
        )  # fmt: skip
        outcome = run_agent(ctx, references, clips, work / "agent.sqlite", run_key)
    return outcome, llm_usage(tracer, llm)
