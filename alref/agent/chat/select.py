"""The chat's `select_referent` tool: the same pivot selection as `alref segment`
(:func:`alref.agent.select.select_pivots`: GPT-PS through the chat's LLM client when an LLM is
configured, else the baseline) on the chat's own detections, then one object from all valid pivots.

The selection is checkpointed in the chat's own SQLite store under a thread derived from the chat's
thread and the request, so a chat interrupted mid-selection continues it when asked again."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from alref.agent.chat.session import ChatSession
from alref.agent.context import AgentContext
from alref.agent.llm import LLMClient
from alref.agent.questions import asking_through_interrupt
from alref.agent.select import select_pivots
from alref.core.records import Reference
from alref.errors import InputError
from alref.media.sampling import make_clips
from alref.media.writers import save_samples

SELECT_MARK = ":select:"


def selection_thread(chat_thread: str, reference: str, settings_key: Any) -> str:
    digest = hashlib.sha256(json.dumps([reference, settings_key], default=str).encode()).hexdigest()[:12]
    return f"{chat_thread}{SELECT_MARK}{digest}"


def is_internal_thread(thread: str) -> bool:
    """A selection's own checkpoint thread (``<chat thread>:select:<digest>``), not a conversation."""
    head, mark, digest = thread.rpartition(SELECT_MARK)
    return bool(mark and head) and len(digest) == 12 and all(c in "0123456789abcdef" for c in digest)


def _traced(llm: LLMClient | None, kind: str, **fields: Any) -> None:
    """``selection_start`` / ``selection_end``: the trace's page groups a selection's steps under them."""
    if llm is not None:
        llm.tracer.event(kind, **fields)


def make_select_referent(session: ChatSession, llm: LLMClient | None, saver: Any, chat_thread: str):
    """``llm`` None: the baseline decides (no LLM configured for the pivot steps). Where several boxes
    fit equally the chat asks the person (the chat graph's ``interrupt()``)."""
    settings = session.settings
    # the chat asks through its checkpointed graph; without a checkpointer (the LangGraph server's chat
    # node) --ambiguous decides
    asking = settings.model_copy(update={"ask": saver is not None})

    def select_referent(reference: str, object_id: int | None = None) -> dict[str, Any]:
        clips = make_clips(session.info.num_frames, settings.clip_frames, settings.samples)
        sampled = sorted({f for c in clips for f in c["samples"]})
        frames = session.video.read_frames(sampled)
        found = session.detector.detect([frames[f] for f in sampled], reference, settings.box_threshold,
                                        settings.text_threshold, settings.top_k, settings.detect_batch)  # fmt: skip
        detections = {1: dict(zip(sampled, found, strict=True))}
        ctx = None
        if llm is not None:
            save_samples(frames, session.workspace.sample)
            ctx = AgentContext(settings=asking, llm=llm, workspace=session.workspace, tracer=llm.tracer)
        key = [settings.clip_frames, settings.samples, settings.box_threshold, settings.text_threshold,
               settings.top_k, settings.pivot, session.models.describe()["grounding"]]  # fmt: skip
        _traced(llm, "selection_start", tool="select_referent", reference=reference, object_id=object_id)
        results = asking_through_interrupt(lambda answers: select_pivots(  # a person is there: the chat asks
            [Reference(id=1, text=reference)], clips, detections, asking, ctx, checkpointer=saver,
            thread_id=selection_thread(chat_thread, reference, key), tracer=llm.tracer if llm else None,
            resume=answers,
        ))  # fmt: skip
        decisions = results[0]["clips"]
        prompts = [(d["pivot_frame"], list(d["pivot_box"])) for d in decisions if d["valid"]]
        if not prompts:
            why = results[0]["not_found"] or "; ".join(d["reason"] for d in decisions)
            _traced(llm, "selection_end", tool="select_referent", reference=reference, status="not_found",
                    reason=why, clips=decisions)  # fmt: skip
            raise InputError(f"no clip has a box for '{reference}': {why}")
        result = session.set_object(prompts, reference, reference, object_id)
        _traced(llm, "selection_end", tool="select_referent", reference=reference, status="ok",
                objects=[result["object_id"]], clips=decisions)  # fmt: skip
        return result | {
            "clips": [
                {"clip": d["clip"], "frame": d["pivot_frame"], "decided_by": d["decided_by"]}
                | ({"ambiguous": d["ambiguity"]["decided"]} if d.get("ambiguity") else {})
                | ({"more_boxes_named": d["extra_boxes"]} if d.get("extra_boxes") else {})
                for d in decisions
            ]
        }

    return select_referent


def make_track_referent(session: ChatSession, llm: LLMClient | None, saver: Any, chat_thread: str):
    """The chat's ``track_referent`` tool: the tracks strategy (SAM 3 tracks the sentence's concept, the
    LLM judges them) for one sentence; every accepted track becomes an object, prompted with its box on
    the frame where it is largest (so the chat can refine, undo and rebuild it as any other object)."""
    from alref.agent.tracks.select import select_tracks

    settings = session.settings

    def track_referent(reference: str) -> dict[str, Any]:
        source = session.tracks_source()
        ctx = None
        if llm is not None:
            ctx = AgentContext(settings=settings.model_copy(update={"ask": saver is not None}), llm=llm,
                               workspace=session.workspace, tracer=llm.tracer, tools=source)  # fmt: skip
        key = [
            "tracks",
            settings.track_concepts,
            settings.track_candidates,
            settings.track_rounds,
            settings.track_frames,
        ]
        _traced(llm, "selection_start", tool="track_referent", reference=reference)
        (decision,) = asking_through_interrupt(lambda answers: select_tracks(
            [Reference(id=1, text=reference)], settings.model_copy(update={"ask": saver is not None}), source, ctx,
            checkpointer=saver, thread_id=selection_thread(chat_thread, reference, key),
            tracer=llm.tracer if llm else None, resume=answers,
        ))  # fmt: skip
        if not decision["accepted"]:
            _traced(llm, "selection_end", tool="track_referent", reference=reference, status="not_found",
                    reason=decision["reason"], concept=decision["concept"])  # fmt: skip
            raise InputError(f"no object for '{reference}': {decision['reason']}")
        by_id = {t["id"]: t for t in decision["candidates"]}
        made = []
        for n, tid in enumerate(decision["accepted"], start=1):
            track = by_id[tid]
            frame = max(track["frames"], key=lambda f: (track["area"][str(f)], -f))
            name = reference if len(decision["accepted"]) == 1 else f"{reference} ({n})"
            made.append(session.set_object([(frame, track["boxes"][str(frame)])], name, reference))
        _traced(llm, "selection_end", tool="track_referent", reference=reference, status="ok",
                objects=[m["object_id"] for m in made], concept=decision["concept"],
                decided_by=decision["decided_by"], reason=decision["reason"])  # fmt: skip
        return {"objects": made, "concept": decision["concept"], "decided_by": decision["decided_by"],
                "reason": decision["reason"]}  # fmt: skip

    return track_referent
