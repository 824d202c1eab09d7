"""The paper's GroundingDINO + SAM 2 baseline decisions, used when no LLM is configured and as
the deterministic fallback whenever an LLM decision cannot be had.

Per clip: the pivot frame is the sampled frame chosen by the rule (``best`` = highest detection
score, ``first`` / ``middle`` = that sample, moving to the next-best scoring sample when it has no
box); the pivot box is the highest-scoring box on the pivot frame. A clip whose sampled frames hold
no box at all is invalid and gives SAM 2 no prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alref.media.sampling import Clip
from alref.tools.grounding import Detection


@dataclass
class ClipPivot:
    """What was decided for one clip of one reference."""

    clip: Clip
    frame: int | None
    box: tuple[float, float, float, float] | None
    score: float | None
    reason: str
    decided_by: str = "baseline"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.frame is not None and self.box is not None

    def to_dict(self, detections: Mapping[int, Sequence[Detection]]) -> dict[str, Any]:
        return {
            "clip": self.clip.index,
            "start": self.clip.start,
            "end": self.clip.end,
            "samples": list(self.clip.samples),
            "sample_scores": {str(f): _top_score(detections.get(f, ())) for f in self.clip.samples},
            "valid": self.valid,
            "pivot_frame": self.frame,
            "pivot_box": [round(v, 2) for v in self.box] if self.box else None,
            "pivot_score": round(self.score, 4) if self.score is not None else None,
            "decided_by": self.decided_by,
            "reason": self.reason,
            **self.extra,
        }


def _top_score(dets: Sequence[Detection]) -> float | None:
    return round(dets[0].score, 4) if dets else None


def samples_by_score(clip: Clip, detections: Mapping[int, Sequence[Detection]]) -> list[int]:
    """Sampled frames that have at least one box, best top score first (ties: earlier frame)."""
    scored = [f for f in clip.samples if detections.get(f)]
    return sorted(scored, key=lambda f: (-detections[f][0].score, f))


def choose_pivot(clip: Clip, detections: Mapping[int, Sequence[Detection]], rule: str = "best") -> ClipPivot:
    """The baseline pivot frame and box for one clip (see the module docstring)."""
    ranked = samples_by_score(clip, detections)
    n = len(clip.samples)
    if not ranked:
        return ClipPivot(
            clip, None, None, None, f"no candidate box on any of the {n} sampled frames; clip not used"
        )
    if rule == "best":
        frame = ranked[0]
        reason = f"highest detection score ({detections[frame][0].score:.3f}) among {n} sampled frames"
    else:
        wanted = clip.samples[0] if rule == "first" else clip.samples[(n - 1) // 2]
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
    return ClipPivot(clip, frame, top.box, top.score, reason)


def start_frame(pivots: Sequence[ClipPivot]) -> tuple[int | None, str]:
    """Where propagation starts: the middle clip's pivot frame, or the valid clip nearest to it."""
    if not pivots:
        return None, "no clips"
    middle = (len(pivots) - 1) // 2
    order = sorted(range(len(pivots)), key=lambda i: (abs(i - middle), i))
    for i in order:
        if pivots[i].valid:
            if i == middle:
                return pivots[i].frame, f"pivot frame of the middle clip ({i})"
            return pivots[
                i
            ].frame, f"middle clip ({middle}) has no pivot; pivot frame of the nearest valid clip ({i})"
    return None, "no clip has a pivot"
