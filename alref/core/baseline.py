"""The paper's GroundingDINO + SAM 2 baseline decisions, used when no LLM is configured and as
the deterministic fallback whenever an LLM decision cannot be had.

Per clip: the pivot frame is the sampled frame chosen by the rule (``best`` = highest detection
score, ``first`` / ``middle`` = that sample, moving to the next-best scoring sample when it has no
box); the pivot box is the highest-scoring box on the pivot frame. A clip whose sampled frames hold
no box at all is invalid and gives SAM 2 no prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

from alref.core.records import Clip, ClipDecision, Detections, clip_fields


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
