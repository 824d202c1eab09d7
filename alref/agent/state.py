"""Graph state. Only paths, ids, boxes, numbers and short texts live here (and so in checkpoints);
frames and masks stay on disk or in the tools."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class Message(TypedDict):
    """One turn of a clip's conversation; images are file paths."""

    role: str  # system | user | assistant
    text: str
    images: list[str]


class Candidate(TypedDict):
    number: int  # 1-based, as drawn
    colour: str  # the colour it was drawn in
    box: list[float]  # xyxy pixels
    score: float
    phrase: str  # the detector's label (a hint)


class ClipState(TypedDict, total=False):
    """State of one (reference, clip) branch."""

    ref_id: int
    reference: str
    clip: dict[str, Any]  # index, start, end, samples (absolute frame indices)
    max_attempts: int  # 1 + --llm-retries
    hint_frame: int | None  # a frame where the referent is easy to see (LBRU), absolute index
    conversation: list[Message]
    event: str  # describe_event's answer
    llm_down: str | None  # why the LLM cannot be used any more in this clip
    # choose_frame
    frame_attempts: int
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
    box_error: str | None
    box: int | None  # 1-based number of the chosen candidate; None = none fits / not decided
    box_none: bool  # the LLM said that no box fits
    box_reasoning: str
    box_decided_by: str
    box_fallback_reason: str | None
    clip_results: Annotated[list[dict[str, Any]], operator.add]


class ClipOutput(TypedDict):
    clip_results: Annotated[list[dict[str, Any]], operator.add]


class RunState(TypedDict, total=False):
    """State of the whole pivot selection for one video."""

    references: list[dict[str, Any]]  # {"id", "text"}
    clips: list[dict[str, Any]]
    max_attempts: int
    clip_results: Annotated[list[dict[str, Any]], operator.add]
    summary: dict[str, Any]  # written by propagate
