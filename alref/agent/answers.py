"""The structured answers the LLM gives at each deciding step (pydantic schemas).

Numbers are 1-based, as printed on the tiles and boxes the LLM sees. ``box: null`` means the LLM
says no candidate box holds the referent.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class FrameChoice(BaseModel):
    """Answer of ``choose_frame``."""

    reasoning: str = Field(description="why this frame shows the referred object most clearly")
    frame: int = Field(description="the number printed on the chosen frame")


class BoxChoice(BaseModel):
    """Answer of ``choose_box``."""

    reasoning: str = Field(description="which box holds the whole subject and nothing else, and why")
    box: int | None = Field(description="the number of the chosen box, or null if no box fits")
    ambiguous: list[int] = Field(
        default_factory=list,
        description="the numbers of other boxes that fit the description just as well as the chosen one "
        "(empty when the choice is clear)",
    )


class SyntaxAnalysis(BaseModel):
    """Answer of ``syntax_analysis``."""

    reasoning: str = Field(description="the grammatical analysis of the reference")
    subject: str = Field(
        description="the object the reference is about (its grammatical subject), in a few words"
    )


class SoundSource(BaseModel):
    category: str = Field(description="the object that makes the sound, in one or two plain words")
    labels: list[str] = Field(
        default_factory=list, description="the offered sound labels this object explains"
    )
    frame: int = Field(description="the number of the frame where the object is easiest to see")


class SoundSources(BaseModel):
    """Answer of LBRU's ``name_sound_sources``."""

    reasoning: str = Field(description="which labels have a visible source, and which were dropped or merged")
    objects: list[SoundSource] = Field(
        description="the sounding objects; empty if no label has a visible source"
    )


class ConceptChoice(BaseModel):
    """Answer of ``extract_concepts`` (the tracks strategy)."""

    reasoning: str = Field(description="what kind of object the sentence is about")
    concept: str = Field(description="the referent's category as a short noun phrase, e.g. 'dog'")
    alternatives: list[str] = Field(
        default_factory=list,
        description="other short noun phrases for the same category, e.g. 'puppy', 'animal'",
    )


class CandidateLabel(BaseModel):
    number: int = Field(description="the number drawn on the candidate")
    verdict: Literal["accept", "reject", "uncertain"] = Field(
        description="accept: it is (one of) the objects the sentence means; reject: it is not; "
        "uncertain: these frames cannot tell"
    )
    reason: str = Field(description="the evidence in the frames, in one sentence")


class CandidateLabels(BaseModel):
    """Answer of ``judge_candidates`` (the tracks strategy)."""

    reasoning: str = Field(description="what the sentence asks for and what each candidate does")
    labels: list[CandidateLabel] = Field(description="one label for every numbered candidate shown")


class MaskVerdict(BaseModel):
    object: int = Field(description="the object number drawn on the outline")
    verdict: Literal["correct", "wrong_object", "partial", "target_absent", "unsure"] = Field(
        description="correct: the outlined object is what the sentence means, on every frame shown; "
        "wrong_object: it is another object; partial: it misses part of the object, or misses objects "
        "the sentence includes; target_absent: nothing in the video matches the sentence; "
        "unsure: these frames cannot tell"
    )
    reason: str = Field(description="the evidence in the frames, in one sentence")


class MaskVerdicts(BaseModel):
    """Answer of ``verify_masks``: one verdict per object shown."""

    reasoning: str = Field(description="what each sentence asks for and what each outlined object is")
    verdicts: list[MaskVerdict] = Field(description="one verdict for every object listed")
