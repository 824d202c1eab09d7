"""Verification after propagation, for both strategies: cheap checks of the masks (every run), then,
with an LLM and ``--verify``, rounds of "look at the masks and say what is wrong" whose verdicts the
run acts on:

- pivot strategy, ``wrong_object``: every box that referent's clips were prompted with is excluded and
  each clip takes the highest-scoring box left (same pivot frame first, then the next sampled frame);
  only that object is propagated again, in a session of its own over the same decoded frames, and
  its masks replace the old ones (no box left: ``not_found``);
- tracks strategy, ``wrong_object``: its accepted tracks are rejected and the uncertain ones judged
  again; ``partial``: the rejected and uncertain tracks are judged again, told what was missing;
- ``target_absent`` (both): the referent is ``not_found``, its masks empty, with the LLM's reason;
- ``correct``, ``unsure``, and ``partial`` for the pivot strategy (nothing left to add) change nothing.

A round that changes nothing ends the loop; ``--verify-rounds`` bounds it. The files of a changed
object are rewritten frame by frame with atomic writes (PNGs, then masks.json, then overlay.mp4), so
nothing of the rejected attempt remains. Every round — the frames shown, the image, the checks, the
verdicts and what changed — goes to result.json's ``verification`` and to the trace.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alref.agent.checkpoint import sqlite_saver
from alref.agent.context import AgentContext
from alref.agent.verify import VerifyObject, run_verification
from alref.core.baseline import next_candidate
from alref.core.checks import mask_checks, verification_frames
from alref.core.records import (
    MaskCheck,
    ObjectVerdict,
    ReferenceDecision,
    TrackDecision,
    VerificationChange,
    VerificationRound,
)
from alref.media.marks import draw_marks
from alref.media.masks import MaskSink
from alref.media.tiles import tile_frames
from alref.media.writers import write_jpeg
from alref.progress import Reporter


def current_checks(sink: MaskSink) -> list[MaskCheck]:
    info = sink.info
    return mask_checks(sink.area, sink.intersections, info.num_frames, info.height * info.width)


class ReplacingSink:
    """What a re-propagation writes into: the objects it propagates replace theirs; the others keep theirs."""

    def __init__(self, sink: MaskSink) -> None:
        self.sink = sink

    def add(self, frame: int, masks: dict[int, np.ndarray]) -> None:
        self.sink.replace(frame, masks)

    def fill_missing(self) -> None:  # a re-propagation reaches every frame both ways
        return None


def empty_object(sink: MaskSink, obj: int) -> None:
    """``obj``'s masks emptied on every frame (target absent, or no candidate left)."""
    empty = np.zeros((sink.info.height, sink.info.width), dtype=bool)
    for frame in range(sink.info.num_frames):
        if sink.area[obj].get(frame, 0):
            sink.replace(frame, {obj: empty})


def render_round(video: Any, sink: MaskSink, objects: Sequence[int], frames: Sequence[int], path: Any,
                 columns: int, max_side: int) -> str:  # fmt: skip
    """The frames with each object's mask outlined in its colour (as overlay.mp4 colours it) and its
    number beside it, tiled with each frame's number in the video."""
    images = []
    for index, frame in video.iter_frames(frames):
        masks = sink.masks_at(index)
        marks = [(obj, obj - 1, masks[obj]) for obj in objects if masks[obj].any()]
        images.append(draw_marks(frame, marks, alpha=0.0))
    tile = tile_frames(images, list(frames), columns, max_side)
    return write_jpeg(path, tile.image)


@dataclass
class Verifier:
    """One run's verification: what it needs from the run, and what it recorded."""

    ctx: AgentContext | None  # None: no LLM, only the cheap checks
    video: Any
    sink: MaskSink
    run_key: str
    reporter: Reporter
    reason_off: str | None = None  # why the LLM does not verify (no LLM, --no-verify)
    rounds: list[VerificationRound] = field(default_factory=list)
    repropagated: list[int] = field(default_factory=list)  # object ids, once per re-propagation
    answers: dict[str, Any] | None = None  # a person's answers to the questions verification asked

    def run(self, objects: dict[int, str], act: Callable[[list[ObjectVerdict], int], list[VerificationChange]],
            found: Callable[[int], bool]) -> None:  # fmt: skip
        """Rounds of verification over ``objects`` (id -> sentence) still ``found``; ``act`` applies a
        round's verdicts (rewriting the masks it changes) and says what changed."""
        if self.ctx is None:
            return
        ctx, settings = self.ctx, self.ctx.settings
        workspace = ctx.workspace
        for number in range(1, settings.verify_rounds + 1):
            active = [obj for obj in sorted(objects) if found(obj)]
            if not active:
                break
            checks = current_checks(self.sink)
            frames = verification_frames(self.sink.area, active, checks, self.sink.info.num_frames,
                                         settings.verify_frames)  # fmt: skip
            with self.reporter.stage(f"verifying ({number})", None):
                image = render_round(self.video, self.sink, active, frames, workspace.verify_image(number),
                                     settings.tile_columns, settings.tile_max_side)  # fmt: skip
                told = [c for c in checks if c["object"] in active]
                with sqlite_saver(workspace.checkpoint) as saver:
                    verdicts, _ = run_verification(
                        [VerifyObject(id=obj, text=objects[obj]) for obj in active], frames, image, told, ctx,
                        round_=number, checkpointer=saver, thread_id=f"{self.run_key}:verify:{number}",
                        answers=self.answers,
                    )  # fmt: skip
                changes = act(verdicts, number)
            self.rounds.append(VerificationRound(
                round=number, frames=list(frames), image=os.path.relpath(image, workspace.agent), checks=told,
                verdicts=verdicts, changes=changes,
            ))  # fmt: skip
            ctx.tracer.event("verification_round", round=number, frames=list(frames), image=ctx.tracer.image(image),
                             checks=[dict(c) for c in told],
                             verdicts=[dict(v) for v in verdicts], changes=[dict(c) for c in changes])  # fmt: skip
            for change in changes:
                if change["action"] != "none":
                    self.reporter.note(f"verification: object {change['object']}: {change['detail']}")
            if all(c["action"] == "none" for c in changes):
                break

    def record(self) -> dict[str, Any]:
        """result.json's ``verification``: the final checks and every round."""
        changed = sorted({c["object"] for r in self.rounds for c in r["changes"] if c["action"] != "none"})
        return {
            "llm": self.ctx is not None,
            "reason": self.reason_off,
            "checks": current_checks(self.sink),
            "rounds": self.rounds,
            "changed_objects": changed,
            "repropagated": list(self.repropagated),
        }

    @property
    def changed(self) -> bool:
        return any(c["action"] != "none" for r in self.rounds for c in r["changes"])

    def verdict_of(self, obj: int) -> ObjectVerdict | None:
        """The last verdict about ``obj``, if it was verified."""
        for r in reversed(self.rounds):
            for v in r["verdicts"]:
                if v["object"] == obj:
                    return v
        return None


def make_verifier(ctx: AgentContext | None, settings: Any, video: Any, sink: MaskSink, run_key: str,
                  reporter: Reporter, answers: dict[str, Any] | None = None) -> Verifier:  # fmt: skip
    """The run's verifier: the LLM verifies with an agent and ``--verify``; the cheap checks always run."""
    if ctx is None:
        return Verifier(
            None, video, sink, run_key, reporter, reason_off="no LLM configured: cheap checks only"
        )
    if not settings.verify:
        return Verifier(None, video, sink, run_key, reporter, reason_off="--no-verify: cheap checks only")
    return Verifier(ctx, video, sink, run_key, reporter, answers=answers)


def apply_verification(result: dict[str, Any], verifier: Verifier) -> None:
    """result.json's ``verification`` and, per reference, its last verdict."""
    result["verification"] = verifier.record()
    for ref in result["references"]:
        verdict = verifier.verdict_of(ref["id"])
        if verdict is not None:
            ref["verification"] = dict(verdict)


def unchanged(obj: int, detail: str) -> VerificationChange:
    return VerificationChange(object=obj, action="none", detail=detail, repropagated=False)


# --- what a verdict changes ------------------------------------------------------------------------


def pivot_actions(results: list[ReferenceDecision], detections: dict[int, Any], starts: dict[int, dict],
                  segmenter: Any, store: Any, sink: MaskSink, reporter: Reporter,
                  verifier: Verifier) -> Callable[[list[ObjectVerdict], int], list[VerificationChange]]:  # fmt: skip
    """The pivot strategy's consequences (module docstring); ``results`` and ``starts`` are updated."""
    from alref.pipeline.stages import propagate_all

    by_id = {r["id"]: r for r in results}
    excluded: dict[int, list[list[float]]] = {}

    def act(verdicts: list[ObjectVerdict], number: int) -> list[VerificationChange]:
        changes, redo = [], []
        for v in verdicts:
            obj, ref = v["object"], by_id[v["object"]]
            if v["verdict"] == "target_absent":
                ref["not_found"] = f"verification round {number}: the target is absent ({v['reason']})"
                empty_object(sink, obj)
                changes.append(VerificationChange(object=obj, action="not_found", repropagated=False,
                                                  detail=f"target absent: masks emptied ({v['reason']})"))  # fmt: skip
            elif v["verdict"] == "wrong_object":
                gone = excluded.setdefault(obj, [])
                gone += [[d["pivot_frame"], *d["pivot_box"]] for d in ref["clips"] if d["valid"]]
                ref["clips"] = [next_candidate(d, detections[obj], gone, number) if d["valid"] else d
                                for d in ref["clips"]]  # fmt: skip
                valid = [d for d in ref["clips"] if d["valid"]]
                if valid:
                    redo.append(ref)
                    boxes = ", ".join(
                        f"frame {d['pivot_frame']} box {[round(x) for x in d['pivot_box']]}" for d in valid
                    )
                    changes.append(VerificationChange(object=obj, action="next_candidate", repropagated=True,
                                                      detail=f"wrong object: took the next candidate ({boxes}) "
                                                             f"and propagated it again"))  # fmt: skip
                else:
                    ref["not_found"] = (f"verification round {number}: the object was the wrong one ({v['reason']}) "
                                        f"and no other candidate box is left")  # fmt: skip
                    empty_object(sink, obj)
                    changes.append(VerificationChange(object=obj, action="not_found", repropagated=False,
                                                      detail="wrong object and no other candidate: masks emptied"))  # fmt: skip
            else:
                changes.append(unchanged(obj, f"{v['verdict']}: masks kept"))
        if redo:
            with reporter.stage("re-propagation", None):
                starts.update(propagate_all(segmenter, store, sink.info, redo, ReplacingSink(sink), reporter))
            verifier.repropagated.extend(r["id"] for r in redo)
        return changes

    return act


def tracks_actions(decisions: list[TrackDecision], mask_of: Callable[[TrackDecision, int], Any], ctx: AgentContext,
                   sink: MaskSink, run_key: str, answers: dict[str, Any] | None = None) -> Callable[[list[ObjectVerdict], int], list[VerificationChange]]:  # fmt: skip
    """The tracks strategy's consequences (module docstring); ``decisions`` is updated in place;
    ``mask_of(decision, frame)`` is a decision's mask on a frame (None: empty)."""
    from alref.agent.tracks.select import rejudge

    index = {d["id"]: i for i, d in enumerate(decisions)}

    def rewrite(decision: TrackDecision) -> None:
        empty = np.zeros((sink.info.height, sink.info.width), dtype=bool)
        for frame in range(sink.info.num_frames):
            mask = mask_of(decision, frame)
            sink.replace(frame, {decision["id"]: empty if mask is None else mask})

    def act(verdicts: list[ObjectVerdict], number: int) -> list[VerificationChange]:
        changes = []
        for v in verdicts:
            obj = v["object"]
            old = decisions[index[obj]]
            if v["verdict"] == "target_absent":
                why = f"verification round {number}: the target is absent ({v['reason']})"
                decisions[index[obj]] = TrackDecision(
                    **{**old, "accepted": [], "not_found": why, "reason": why}
                )  # type: ignore[typeddict-item]
                empty_object(sink, obj)
                changes.append(VerificationChange(object=obj, action="not_found", repropagated=False,
                                                  detail=f"target absent: masks emptied ({v['reason']})"))  # fmt: skip
                continue
            if v["verdict"] not in ("wrong_object", "partial"):
                changes.append(unchanged(obj, f"{v['verdict']}: masks kept"))
                continue
            with sqlite_saver(ctx.workspace.checkpoint) as saver:
                new = rejudge(old, v, number, ctx, checkpointer=saver, thread_id=f"{run_key}:rejudge:{obj}:{number}",
                              answers=answers)  # fmt: skip
            decisions[index[obj]] = new
            action = "reject_tracks" if v["verdict"] == "wrong_object" else "rejudge"
            if sorted(new["accepted"]) == sorted(old["accepted"]) and new["not_found"] == old["not_found"]:
                changes.append(VerificationChange(object=obj, action=action, repropagated=False,
                                                  detail=f"{v['verdict']}: judged again, the same tracks stay accepted"))  # fmt: skip
                continue
            rewrite(new)
            accepted = ", ".join(map(str, new["accepted"])) or "none"
            changes.append(VerificationChange(object=obj, action=action, repropagated=True,
                                              detail=f"{v['verdict']}: judged again; accepted tracks now {accepted}"
                                                     + (" (not found)" if new["not_found"] else "")))  # fmt: skip
        return changes

    return act
