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
