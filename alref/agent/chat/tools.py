"""The chat agent's tools: the project's models behind typed schemas, bound to one ChatSession.
Every tool returns short JSON-able facts; images it makes are shown to the model on its next step."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field

from alref.agent.chat.session import ChatSession
from alref.errors import AlrefError


class ShowFramesArgs(BaseModel):
    frames: list[int] = Field(
        default_factory=list, description="0-based frame numbers to show; empty = evenly spaced"
    )
    count: int = Field(8, ge=1, le=16, description="how many evenly spaced frames when `frames` is empty")


class GroundArgs(BaseModel):
    frame: int = Field(ge=0, description="0-based frame number")
    phrase: str = Field(description="what to look for, e.g. 'dog'")


class SegmentArgs(BaseModel):
    frame: int = Field(ge=0, description="0-based frame number the box is on")
    box: list[float] | None = Field(None, description="[x0, y0, x1, y1] in pixels")
    box_number: int | None = Field(
        None, ge=1, description="or the number of a box from the last ground_phrase on that frame"
    )
    name: str = Field(description="a short name for the object, e.g. 'the barking dog'")
    object_id: int | None = Field(
        None, ge=1, description="replace this existing object instead of adding a new one"
    )


class SelectArgs(BaseModel):
    reference: str = Field(
        description="the full description of the object, e.g. 'the dog on the left that jumps'"
    )
    object_id: int | None = Field(
        None, ge=1, description="replace this existing object instead of adding a new one"
    )


class RefineArgs(BaseModel):
    object_id: int = Field(ge=1, description="the object to correct (its id, as list_objects gives it)")
    frame: int = Field(ge=0, description="0-based frame number the points and the box are on")
    positive_points: list[list[float]] = Field(
        default_factory=list,
        description="[[x, y], ...] in pixels: points ON the object that its mask misses on that frame",
    )
    negative_points: list[list[float]] = Field(
        default_factory=list,
        description="[[x, y], ...] in pixels: points that are NOT the object but are inside its mask",
    )
    box: list[float] | None = Field(
        None, description="[x0, y0, x1, y1] in pixels: a box around the whole object on that frame"
    )


class ObjectArgs(BaseModel):
    object_id: int = Field(ge=1)


class RenameArgs(BaseModel):
    object_id: int = Field(ge=1)
    name: str


class SoundArgs(BaseModel):
    object_id: int = Field(ge=1)
    sound: str = Field(description="the sound the object makes, e.g. 'dog barking'")


class TagArgs(BaseModel):
    top_k: int = Field(5, ge=1, le=20)


class ExportArgs(BaseModel):
    folder: str | None = Field(
        None, description="where to write; default: the chat's own folder (as alref segment lays out a run)"
    )


class NoArgs(BaseModel):
    pass


def _tool(name: str, description: str, schema: type[BaseModel], func) -> StructuredTool:
    def run(**kwargs: Any) -> str:
        try:
            return json.dumps(func(**kwargs), default=str)
        except (AlrefError, ValueError, IndexError, KeyError) as exc:
            raise ToolException(" ".join(str(exc).split())) from None

    return StructuredTool.from_function(func=run, name=name, description=description, args_schema=schema,
                                        handle_tool_error=True)  # fmt: skip


class TrackArgs(BaseModel):
    reference: str = Field(
        description="the full description, e.g. 'the two dogs running left' (may mean several objects)"
    )


def make_tools(session: ChatSession, select_referent, track_referent=None) -> list[StructuredTool]:
    def segment(frame: int, name: str, box: list[float] | None = None, box_number: int | None = None,
                object_id: int | None = None) -> dict[str, Any]:  # fmt: skip
        if box is None:
            boxes = getattr(session, "last_boxes", {}).get(frame)
            if box_number is None or not boxes:
                raise ValueError(
                    f"give a box, or a box_number from ground_phrase on frame {frame} (call it first)"
                )
            if not 1 <= box_number <= len(boxes):
                raise ValueError(
                    f"box {box_number} does not exist: ground_phrase found {len(boxes)} boxes on frame {frame}"
                )
            box = boxes[box_number - 1]["box"]
        return session.set_object([(frame, box)], name, object_id=object_id)

    def refine(object_id: int, frame: int, positive_points: list[list[float]] | None = None,
               negative_points: list[list[float]] | None = None, box: list[float] | None = None) -> dict[str, Any]:  # fmt: skip
        positives, negatives = positive_points or [], negative_points or []
        return session.refine(  # positive points first, then negative ones, as `alref refine` orders them
            object_id, frame, [*positives, *negatives], [1] * len(positives) + [0] * len(negatives), box
        )

    return [
        _tool("show_frames", "Show frames of the video as one tiled image labelled with their frame numbers.", ShowFramesArgs,
              session.show_frames),
        _tool("ground_phrase", "Find numbered candidate boxes for a phrase on one frame (GroundingDINO); the boxes are "
              "shown to you as an image.", GroundArgs, session.ground),
        _tool("segment_box", "Segment an object from a box on one frame and propagate its mask through the whole video "
              "(SAM 2). Use object_id to replace an object, e.g. when the user says 'no, the other one'.", SegmentArgs, segment),
        _tool("select_referent", "Run the full pivot selection for a sentence (every clip: best frame, candidate boxes, "
              "the box that is the sentence's subject) and segment the result.", SelectArgs, select_referent),
        *([_tool("track_referent", "SAM 3 tracks every object of the sentence's kind over the whole video and you judge "
                 "them (the tracks strategy); every accepted one becomes an object. Use it when the sentence may mean "
                 "several objects.", TrackArgs, track_referent)] if track_referent else []),
        _tool("refine_object", "Correct an object's mask on one frame with positive points (on the object), negative "
              "points (not the object) and/or a box; SAM 2 propagates it again through the whole video. Use it when "
              "the mask misses part of the object, covers something else, or loses the object on some frames.",
              RefineArgs, refine),
        _tool("tag_audio", "The AudioSet sound classes heard in the video's audio.", TagArgs, session.tag_audio),
        _tool("keep_while_sounding", "Keep an object's mask only while a sound is heard (e.g. 'only while it barks').",
              SoundArgs, session.keep_while_sounding),
        _tool("list_objects", "The current objects with their ids, names, prompts and the frames they appear on.", NoArgs,
              session.describe_objects),
        _tool("remove_object", "Remove an object.", ObjectArgs, session.remove),
        _tool("rename_object", "Rename an object.", RenameArgs, session.rename),
        _tool("undo", "Undo the last change to the objects.", NoArgs, session.undo),
        _tool("export", "Write the masks (PNG per frame, masks.json, palette) of the current objects.", ExportArgs,
              session.export),
    ]  # fmt: skip
