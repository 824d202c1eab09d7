"""The paper's GroundingDINO + SAM 2 baseline decisions, used when no LLM is configured and as
the deterministic fallback whenever an LLM decision cannot be had.

Per clip: the pivot frame is the sampled frame chosen by the rule (``best`` = highest detection
score, ``first`` / ``middle`` = that sample, moving to the next-best scoring sample when it has no
box); the pivot box is the highest-scoring box on the pivot frame. A clip whose sampled frames hold
no box at all is invalid and gives SAM 2 no prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

from alref.core.records import Clip, ClipDecision, ClipRevision, Detections, clip_fields, decision_clip


def samples_by_score(clip: Clip, detections: Detections) -> list[int]:
    """Sampled frames that have at least one box, best top score first (ties: earlier frame)."""
    scored = [f for f in clip["samples"] if detections.get(f)]
    return sorted(scored, key=lambda f: (-detections[f][0].score, f))


def choose_pivot(clip: Clip, detections: Detections, rule: str = "best", ref_id: int = 1) -> ClipDecision:
    """The baseline pivot frame and box for one clip (see the module docstring)."""
    ranked = samples_by_score(clip, detections)
    n = len(clip["samples"])
    base = {"ref_id": ref_id, **clip_fields(clip), "decided_by": "baseline"}
    if not ranked:
        reason = f"no candidate box on any of the {n} sampled frames; clip not used"
        return ClipDecision(
            **base, valid=False, pivot_frame=None, pivot_box=None, pivot_score=None, reason=reason
        )
    if rule == "best":
        frame = ranked[0]
        reason = f"highest detection score ({detections[frame][0].score:.3f}) among {n} sampled frames"
    else:
        wanted = clip["samples"][0] if rule == "first" else clip["samples"][(n - 1) // 2]
        if detections.get(wanted):
            frame, reason = wanted, f"{rule} sampled frame"
        else:
            frame = ranked[0]
            reason = (
                f"{rule} sampled frame {wanted} has no candidate box; took the next-best sampled frame "
                f"by detection score ({detections[frame][0].score:.3f})"
            )
    top = detections[frame][0]
    reason += f"; pivot box = highest-scoring box ({top.score:.3f}, '{top.phrase}')"
    return ClipDecision(**base, valid=True, pivot_frame=frame, pivot_box=list(top.box), pivot_score=top.score,
                        reason=reason)  # fmt: skip


def baseline_decisions(
    clips: Sequence[Clip], detections: Detections, rule: str, ref_id: int
) -> list[ClipDecision]:
    return [choose_pivot(c, detections, rule, ref_id) for c in clips]


def start_frame(decisions: Sequence[ClipDecision]) -> tuple[int | None, str]:
    """Where propagation starts: the middle clip's pivot frame, or the valid clip nearest to it."""
    if not decisions:
        return None, "no clips"
    middle = (len(decisions) - 1) // 2
    order = sorted(range(len(decisions)), key=lambda i: (abs(i - middle), i))
    for i in order:
        if decisions[i]["valid"]:
            if i == middle:
                return decisions[i]["pivot_frame"], f"pivot frame of the middle clip ({i})"
            return decisions[i]["pivot_frame"], (
                f"middle clip ({middle}) has no pivot; pivot frame of the nearest valid clip ({i})"
            )
    return None, "no clip has a pivot"


def sample_scores(decision: ClipDecision, detections: Detections) -> dict[str, float | None]:
    """The top detection score of each sampled frame, as result.json shows it."""
    return {
        str(f): round(detections[f][0].score, 4) if detections.get(f) else None for f in decision["samples"]
    }


#: words a short concept does not keep: articles, numbers and what starts a clause or a place
_SKIP = {"the", "a", "an", "this", "that", "these", "those", "some", "all", "both", "two", "three", "four", "five",
         "one", "several", "many", "each", "every", "another", "other", "there", "here", "it", "its", "they",
         "them", "something", "thing", "object", "what", "any"}  # fmt: skip
_STOP = {"that", "which", "who", "whom", "whose", "where", "when", "while", "on", "in", "at", "with", "of", "near",
         "to", "from", "by", "under", "over", "behind", "beside", "next", "between", "is", "are", "was", "were",
         "being", "and", "or", "but", "as", "than", "for", "into", "onto", "around", "through", "across",
         "toward", "towards", "against", "left", "right", "front", "back", "first", "last"}  # fmt: skip


def concept_of(reference: str) -> str:
    """A short noun phrase for a concept tracker from a sentence, without an LLM: the words before the
    first clause or place word (or a verb in -ing), without articles and numbers, at most three words.
    "the dog on the left that jumps" -> "dog"; "two dogs running left" -> "dogs". Empty when the sentence
    names nothing ("the one that is there")."""
    words = [w.strip(".,;:!?\"'()").lower() for w in reference.split()]
    kept: list[str] = []
    for word in words:
        if not word:
            continue
        if kept and (word in _STOP or word.endswith("ing")):
            break
        if word in _SKIP or word in _STOP:
            continue
        kept.append(word)
    return " ".join(kept[-3:])


#: a box overlapping an excluded one this much (IoU) holds the same object: it is excluded too
SAME_OBJECT_IOU = 0.8


def _same_box(a: Sequence[float], b: Sequence[float]) -> bool:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return union <= 0 and list(a) == list(b) or union > 0 and inter / union >= SAME_OBJECT_IOU


def next_candidate(
    decision: ClipDecision, detections: Detections, excluded: Sequence[Sequence[float]], round_: int
) -> ClipDecision:
    """The clip's pivot once verification excluded boxes (``[frame, x0, y0, x1, y1]`` each; a box
    on that frame overlapping one of them by IoU >= 0.8 holds the same object and is excluded too): the
    highest-scoring box left on the same pivot frame, else on the next sampled frame by detection
    score; none left: the clip is not used. The decision keeps what the agent recorded (its
    reasoning, candidates, images) and says what changed."""
    clip = decision_clip(decision)
    was = decision.get("revised")
    previous = {"previous_frame": was["previous_frame"], "previous_box": was["previous_box"],
                "previous_decided_by": was["previous_decided_by"]} if was else {
                "previous_frame": decision["pivot_frame"], "previous_box": decision["pivot_box"],
                "previous_decided_by": decision["decided_by"]}  # fmt: skip
    revision = ClipRevision(round=round_, excluded=[list(e) for e in excluded], **previous)  # type: ignore[typeddict-item]
    frames = samples_by_score(clip, detections)
    if decision["pivot_frame"] in frames:
        frames.remove(decision["pivot_frame"])
        frames.insert(0, decision["pivot_frame"])
    for frame in frames:
        for det in detections.get(frame, ()):
            if any(int(e[0]) == frame and _same_box(e[1:], det.box) for e in excluded):
                continue
            where = "the same frame" if frame == decision["pivot_frame"] else f"sampled frame {frame}"
            reason = (f"verification round {round_}: the object was the wrong one, so {len(excluded)} box(es) were "
                      f"excluded; took the highest-scoring box left, on {where} ({det.score:.3f}, '{det.phrase}')")  # fmt: skip
            return ClipDecision(**{**decision, "valid": True, "pivot_frame": frame, "pivot_box": list(det.box),  # type: ignore[typeddict-item]
                                   "pivot_score": det.score, "decided_by": "verification", "reason": reason,
                                   "revised": revision})  # fmt: skip
    reason = f"verification round {round_}: the object was the wrong one and no other candidate box is left; clip not used"
    return ClipDecision(**{**decision, "valid": False, "pivot_frame": None, "pivot_box": None,  # type: ignore[typeddict-item]
                           "pivot_score": None, "decided_by": "verification", "reason": reason, "revised": revision})  # fmt: skip
