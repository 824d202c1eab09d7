"""State of the tracks strategy (AgentRVOS-style track reasoning), one branch per reference. Only ids,
frame numbers, short texts and track records (boxes, scores) live here; masks stay with the track
source (SAM 3's tracks, kept as RLE in the workspace)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Protocol

import numpy as np
from typing_extensions import TypedDict

from alref.agent.state import Message
from alref.core.records import CandidateVerdict, Reference, Track, TrackDecision, TrackRound


class TrackSource(Protocol):
    """What the tracks strategy needs from the video: a concept's tracks, a track's mask on a frame,
    and a frame to draw on. The pipeline and the chat give it over their own frames and tracker."""

    def tracks(self, concept: str) -> list[Track]: ...

    def mask(self, concept: str, track_id: int, frame: int) -> np.ndarray: ...

    def frames(self, indices: list[int]) -> dict[int, np.ndarray]:
        """The frames to draw on, read together (a video decodes once for all of them)."""
        ...


class TracksState(TypedDict, total=False):
    """One reference's branch."""

    ref_id: int
    reference: str
    max_attempts: int
    conversation: list[Message]
    llm_down: str | None
    # extract_concepts
    concept_attempts: int
    concept_cuts: int
    concept_error: str | None
    concepts: list[str]  # the concepts to try, best first
    concepts_decided_by: str  # llm | fallback
    concept_reasoning: str
    concept_fallback_reason: str | None
    # generate_tracks
    concept_index: int  # the next concept to try
    concepts_tried: list[str]
    concept: str | None  # the concept whose tracks are judged
    candidates: list[Track]  # numbered 1, 2, … in this order (best score first)
    dropped: list[int]  # tracks beyond the candidate limit (not judged)
    descriptions: str  # describe_candidates' answer
    # judging, in rounds
    round: int
    pending: list[int]  # track ids this round judges
    round_frames: list[int]
    round_image: str | None
    shown_frames: list[int]
    judge_attempts: int
    judge_cuts: int
    judge_error: str | None
    judge_decided_by: str | None  # llm | fallback, for the current round
    judge_fallback_reason: str | None
    verdicts: dict[str, str]  # str(track id) -> its latest verdict
    reasons: dict[str, str]
    rounds: list[TrackRound]
    feedback: str | None  # what verification (or the person) said about the candidates
    ambiguity: dict[str, Any] | None  # the uncertain candidates and how they were settled
    max_rounds: int  # the last round number this branch may reach (a re-judging adds one)
    decisions: Annotated[list[TrackDecision], operator.add]


class TracksOutput(TypedDict):
    decisions: Annotated[list[TrackDecision], operator.add]


class TracksInput(TypedDict, total=False):
    references: list[Reference]
    max_attempts: int


class TracksRunState(TracksInput, total=False):
    decisions: Annotated[list[TrackDecision], operator.add]


def verdict_record(track: int, number: int, verdict: str, reason: str) -> CandidateVerdict:
    return CandidateVerdict(track=track, number=number, verdict=verdict, reason=reason)  # type: ignore[typeddict-item]


def number_of(state: TracksState | dict[str, Any], track_id: int) -> int:
    """The number a candidate is drawn with (its place in ``candidates``, from 1)."""
    return next(i for i, t in enumerate(state["candidates"], start=1) if t["id"] == track_id)
