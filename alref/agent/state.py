"""Graph state of the pivot selection. Only paths, ids, boxes, numbers and short texts live here (and
so in checkpoints); frames and masks stay on disk or in the tools."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from typing_extensions import TypedDict

from alref.core.records import Candidate, Clip, ClipDecision, Reference, ReferenceDecision, StateDetections


class Message(TypedDict):
    """One turn of a clip's conversation; images are file paths."""

    role: str  # system | user | assistant
    text: str
    images: list[str]


class ClipState(TypedDict, total=False):
    """State of one (reference, clip) branch."""

    ref_id: int
    reference: str
    clip: Clip
    detections: StateDetections  # this reference's boxes on the clip's sampled frames (absent: the feed's)
    max_attempts: int  # 1 + --llm-retries
    hint_frame: int | None  # a frame where the referent is easy to see (LBRU), absolute index
    conversation: list[Message]
    event: str  # describe_event's answer
    llm_down: str | None  # why the LLM cannot be used any more in this clip
    # choose_frame
    frame_attempts: int
    frame_cuts: int  # answers cut at the token limit (each re-ask doubles the budget)
    frame_error: str | None
    frame: int | None  # absolute frame index chosen (by the LLM or the fallback)
    frame_reasoning: str
    frame_decided_by: str  # llm | fallback
    frame_fallback_reason: str | None
    # ground_candidates
    pivot_frame: int | None
    pivot_note: str | None  # e.g. moved to the next-best sampled frame
    candidates: list[Candidate]
    candidates_image: str | None
    boxes_description: str
    # syntax_analysis
    subject: str
    syntax_reasoning: str
    # choose_box
    box_attempts: int
    box_cuts: int
    box_error: str | None
    box: int | None  # 1-based number of the chosen candidate; None = none fits / not decided
    box_none: bool  # the LLM said that no box fits
    box_reasoning: str
    box_decided_by: str
    box_fallback_reason: str | None
    box_ambiguous: list[int]  # other boxes the LLM says fit just as well (1-based)
    extra_boxes: list[int]  # more boxes of the referent (the person named several, or --ambiguous all)
    ambiguity: dict[str, Any] | None  # what was ambiguous, who decided and how (the clip's record)
    person_said: str | None  # the person's words about the boxes, sent back to the LLM
    decisions: Annotated[list[ClipDecision], operator.add]


class ClipOutput(TypedDict):
    decisions: Annotated[list[ClipDecision], operator.add]


class PivotInput(TypedDict, total=False):
    """What the pivot selection decides about: every reference in every clip, with the detections
    (absent when they arrive while it runs, through the context's :class:`~alref.agent.feed.InputFeed`)."""

    references: list[Reference]
    clips: list[Clip]
    detections: dict[str, StateDetections]  # str(reference id) -> str(frame) -> boxes, best first
    max_attempts: int


class PivotState(PivotInput, total=False):
    """The whole pivot selection of one video; ``results`` is its output."""

    decisions: Annotated[list[ClipDecision], operator.add]  # one per (reference, clip), any order
    results: list[ReferenceDecision]  # per reference, clips in order (written by decide_references)


class PivotOutput(TypedDict):
    results: list[ReferenceDecision]
