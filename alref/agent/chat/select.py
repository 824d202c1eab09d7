"""The chat's `select_referent` tool: the whole pivot selection for one sentence over every clip
(GPT-PS when an LLM is configured, else the baseline), then one object from all valid pivots."""

from __future__ import annotations

import uuid
from typing import Any

from alref.agent.chat.session import ChatSession
from alref.errors import InputError
from alref.media.sampling import make_clips
from alref.pipeline.baseline import choose_pivot
from alref.pipeline.stages import save_samples


def make_select_referent(session: ChatSession):
    settings = session.settings

    def select_referent(reference: str, object_id: int | None = None) -> dict[str, Any]:
        clips = make_clips(session.info.num_frames, settings.clip_frames, settings.samples)
        sampled = sorted({f for c in clips for f in c.samples})
        frames = session.video.read_frames(sampled)
        found = session.detector.detect([frames[f] for f in sampled], reference, settings.box_threshold,
                                        settings.text_threshold, settings.top_k, settings.detect_batch)  # fmt: skip
        detections = {1: dict(zip(sampled, found, strict=True))}
        if settings.llm_configured:
            from alref.agent.context import AgentContext
            from alref.agent.llm import LLMClient
            from alref.agent.run import run_agent
            from alref.trace.record import Tracer

            work = session.out / "work"
            save_samples(frames, work / "samples")
            tracer = Tracer(session.out / "trace", secrets=[settings.api_key] if settings.api_key else [])
            ctx = AgentContext(settings=settings, llm=LLMClient(settings, tracer=tracer), detections=detections,
                               samples_dir=work / "samples", work=work / "agent", tracer=tracer,
                               propagate=lambda pivots: {})  # fmt: skip
            pivots = run_agent(ctx, [reference], clips, work / "select.sqlite", uuid.uuid4().hex)["pivots"][1]
        else:
            pivots = [choose_pivot(c, detections[1], settings.pivot) for c in clips]
        prompts = [(p.frame, list(p.box)) for p in pivots if p.valid]
        if not prompts:
            raise InputError(f"no clip has a box for '{reference}': " + "; ".join(p.reason for p in pivots))
        result = session.set_object(prompts, reference, reference, object_id)
        return result | {
            "clips": [{"clip": p.clip.index, "frame": p.frame, "decided_by": p.decided_by} for p in pivots]
        }

    return select_referent
