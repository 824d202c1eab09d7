"""The typed records every layer passes to the next. Only ids, frame numbers, boxes, scores and short
texts: they live in LangGraph state and checkpoints, result.json and the LangGraph API as they are, so
they are TypedDicts (JSON and msgpack round-trip them unchanged) — except :class:`Detection`, the
grounding tools' return value, which is a small frozen dataclass and is turned into
:class:`Candidate`-like dicts (:func:`detections_to_state`) wherever it enters state.

Frame numbers are absolute, 0-based indices of the whole video; boxes are ``[x0, y0, x1, y1]`` in
pixels of the video frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict

Box = list[float]
DecidedBy = Literal["llm", "fallback", "baseline", "none", "verification", "person"]


class Clip(TypedDict):
    """Frames ``[start, end)`` of the video and the frames sampled from them (first and last included)."""

    index: int
    start: int
    end: int
    samples: list[int]


@dataclass(frozen=True)
class Detection:
    """One box a grounding tool proposes for a phrase."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the image given, clipped to it
    score: float
    phrase: str  # the words of the phrase this box matched ("" if none passed text_threshold)

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4), "phrase": self.phrase}


class DetectionRecord(TypedDict):
    box: Box
    score: float
    phrase: str


#: detections of one reference: frame -> boxes, best first
Detections = Mapping[int, Sequence[Detection]]
#: the same as it travels in graph state (JSON object keys are strings)
StateDetections = dict[str, list[DetectionRecord]]


def detections_to_state(detections: Detections, frames: Sequence[int]) -> StateDetections:
    """The detections of ``frames`` as plain records (full precision, so decisions do not change)."""
    return {
        str(f): [{"box": list(d.box), "score": d.score, "phrase": d.phrase} for d in detections.get(f, ())]
        for f in frames
    }


def detections_from_state(records: Mapping[str, Sequence[DetectionRecord]]) -> dict[int, list[Detection]]:
    return {
        int(f): [Detection(tuple(d["box"]), d["score"], d["phrase"]) for d in dets]  # type: ignore[arg-type]
        for f, dets in records.items()
    }


class Candidate(TypedDict):
    """A candidate box as the LLM was shown it."""

    number: int  # 1-based, as drawn
    colour: str  # the colour it was drawn in
    box: Box
    score: float
    phrase: str  # the detector's label (a hint)


class Reference(TypedDict):
    """What to segment: object ``id`` (1, 2, … in order) and its sentence."""

    id: int
    text: str
    hint_frame: NotRequired[int | None]  # a frame where it is easy to see (from the sound step)


class ClipImages(TypedDict):
    tile: str | None  # relative to OUT/work/agent
    boxes: str | None


class ClipRevision(TypedDict):
    """Verification said the pivot's object was the wrong one: the boxes excluded so far, and the
    pivot the clip had before."""

    round: int
    excluded: list[list[float]]  # [frame, x0, y0, x1, y1] of every excluded box
    previous_frame: int | None
    previous_box: Box | None
    previous_decided_by: str


class ClipDecision(TypedDict):
    """The pivot of one reference in one clip — what the agent or the baseline decided, and why.

    The same record is the pivot-selection graph's output, the propagation's input and a clip entry
    of result.json (which adds ``sample_scores``). ``decided_by``: ``llm`` (every step answered by the
    LLM), ``fallback`` (some step took the deterministic choice), ``baseline`` (no LLM), ``none``
    (nothing to decide: no candidate box)."""

    ref_id: int
    clip: int
    start: int
    end: int
    samples: list[int]
    valid: bool
    pivot_frame: int | None
    pivot_box: Box | None
    pivot_score: float | None
    decided_by: DecidedBy
    reason: str
    # the agent's details (absent from baseline decisions)
    llm_none: NotRequired[bool]  # the LLM said that no box holds the referent
    attempts: NotRequired[dict[str, int]]  # LLM asks per deciding step ("frame", "box")
    fallbacks: NotRequired[list[str]]
    llm_chosen_frame: NotRequired[int | None]
    event: NotRequired[str]
    frame_reasoning: NotRequired[str]
    frame_numbers: NotRequired[str]  # how the numbers in the LLM's reasoning map to video frames
    boxes_description: NotRequired[str]
    subject: NotRequired[str]
    syntax_reasoning: NotRequired[str]
    box_reasoning: NotRequired[str]
    box_number: NotRequired[int | None]
    box_colour: NotRequired[str | None]
    candidates: NotRequired[list[Candidate]]
    images: NotRequired[ClipImages]
    # set when verification replaced the decided pivot (``decided_by`` is then "verification")
    revised: NotRequired[ClipRevision]
    # several boxes fitted equally: how it was settled; more boxes of the referent (one SAM 2 object each)
    ambiguity: NotRequired[Ambiguity]
    extra_boxes: NotRequired[list[Box]]


class ReferenceDecision(TypedDict):
    """Every clip's decision for one reference, and why it is not found (``None`` when it is)."""

    id: int
    text: str
    clips: list[ClipDecision]
    not_found: str | None


def clip_fields(clip: Clip) -> dict[str, Any]:
    """The clip part of a :class:`ClipDecision`."""
    return {
        "clip": clip["index"],
        "start": clip["start"],
        "end": clip["end"],
        "samples": list(clip["samples"]),
    }


def decision_clip(decision: ClipDecision) -> Clip:
    return {
        "index": decision["clip"],
        "start": decision["start"],
        "end": decision["end"],
        "samples": list(decision["samples"]),
    }


class Track(TypedDict):
    """One object a concept tracker (SAM 3) follows over the video: its masks stay with the tool (or as
    RLE in the workspace); the record holds what a decision needs."""

    id: int  # the tracker's object id, unique within one concept's tracks
    concept: str  # the noun phrase it was found for
    score: float  # the tracker's detection score (the highest over the frames where it exists)
    frames: list[int]  # the frames where its mask is not empty, ascending
    boxes: dict[str, Box]  # str(frame) -> the mask's bounding box, on the frames where it exists
    area: dict[str, int]  # str(frame) -> mask pixels, on the frames where it exists


Verdict = Literal["accept", "reject", "uncertain"]


class CandidateVerdict(TypedDict):
    """The LLM's label for one candidate track in one judging round."""

    track: int  # Track["id"]
    number: int  # the number it was drawn with
    verdict: Verdict
    reason: str


class TrackRound(TypedDict):
    """One judging round: the frames shown, the candidates drawn on them and the labels given."""

    round: int
    frames: list[int]
    candidates: list[int]  # track ids shown in this round
    image: str | None  # the set-of-marks image, relative to OUT/work/agent
    verdicts: list[CandidateVerdict]
    decided_by: DecidedBy


class TrackDecision(TypedDict):
    """The tracks strategy's answer for one reference: the union of the accepted tracks."""

    id: int
    text: str
    concepts_tried: list[str]
    concept: str | None  # the concept whose tracks were judged
    candidates: list[Track]
    rounds: list[TrackRound]
    accepted: list[int]  # track ids
    decided_by: DecidedBy
    reason: str
    not_found: str | None
    ambiguity: NotRequired[Ambiguity]  # candidates stayed uncertain: how it was settled


# --- verification after propagation -----------------------------------------------------------------

CheckKind = Literal["empty", "vanishing", "overlap", "whole_frame"]


class MaskCheck(TypedDict):
    """A problem the cheap checks (no LLM) found in the propagated masks of one referent (two for
    ``overlap``)."""

    check: CheckKind
    object: int
    other: NotRequired[int]  # the other referent of an overlap
    frames: list[int]  # the frames concerned, inclusive [first, last] span
    detail: str


VerdictKind = Literal["correct", "wrong_object", "partial", "target_absent", "unsure"]


class ObjectVerdict(TypedDict):
    """What verification concluded about one referent's masks."""

    object: int
    verdict: VerdictKind | Literal["unverified"]
    reason: str
    decided_by: DecidedBy  # llm; fallback (no usable answer: the masks are kept)


class VerificationChange(TypedDict):
    """What a verdict changed: the new decision for that referent, and whether it was re-propagated."""

    object: int
    action: Literal["next_candidate", "reject_tracks", "rejudge", "not_found", "none"]
    detail: str
    repropagated: bool


class VerificationRound(TypedDict):
    """One look at the masks: the frames shown (video frame numbers, as labelled on the image), the
    image, the cheap checks it was told, the verdicts and what they changed."""

    round: int
    frames: list[int]
    image: str | None  # relative to OUT/work/agent
    checks: list[MaskCheck]
    verdicts: list[ObjectVerdict]
    changes: list[VerificationChange]


# --- questions to the person (LangGraph interrupts) ------------------------------------------------------


class QuestionOption(TypedDict):
    number: int
    label: str  # e.g. "red box" or "candidate 2 (green)"
    box: NotRequired[Box | None]


class Question(TypedDict):
    """What a graph asks a person through LangGraph's ``interrupt()`` (the interrupt's value): JSON-able,
    so the LangGraph server, Studio and the SDK show it as it is."""

    kind: Literal["ambiguous_box", "ambiguous_tracks", "verify_unsure"]
    ref: int
    clip: NotRequired[int | None]
    reference: str
    frame: NotRequired[int | None]  # the video frame the options are drawn on (0-based)
    question: str
    options: list[QuestionOption]
    image: str | None  # the options drawn with their numbers (a path on the machine that runs alref)
    error: NotRequired[str | None]  # why the previous answer could not be used


class Ambiguity(TypedDict):
    """A clip (or reference) where several candidates fit the sentence equally, and how it was settled."""

    numbers: list[int]  # the candidates that fit equally (the LLM's pick first)
    asked: bool  # a person was asked
    answer: str | None  # what the person answered (as given)
    policy: str | None  # --ambiguous when nobody was asked
    decided: str  # in words: what was taken
