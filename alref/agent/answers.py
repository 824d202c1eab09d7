"""The structured answers the LLM gives at each deciding step (pydantic schemas).

Numbers are 1-based, as printed on the tiles and boxes the LLM sees. ``box: null`` means the LLM
says no candidate box holds the referent.
"""

from __future__ import annotations

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
