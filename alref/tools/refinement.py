"""A person's prompt on one object: clicks and/or a box on a frame, in video pixels.

One form and one set of checks for every place a mask is corrected (``alref refine``, the Python API,
MCP's ``refine_object``, the chat's ``refine_object`` tool and the app's clicks): a refinement is
``{frame, points, labels, box}`` with its numbers as floats, as result.json and a conversation's state
record it. The session takes it as the canonical transformers session takes ``input_points`` /
``input_labels`` / ``input_boxes`` (:meth:`alref.tools.segmentation.SegmentationSession.add_points`), so a
new prompt on a frame replaces the object's earlier one there, and the same prompt again holds already.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

from alref.errors import InputError
from alref.tools.segmentation import make_prompt


class Refinement(TypedDict):
    """One prompt of a person, as result.json records it."""

    frame: int
    points: list[list[float]]
    labels: list[int]
    box: list[float] | None


def make_refinement(
    frame: int,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    box: Sequence[float] | None = None,
) -> Refinement:
    """A refinement in its recorded form (numbers as floats), else an InputError in one line: at least a
    point or a box, one label (1 positive, 0 negative) per point, a box x0 <= x1, y0 <= y1."""
    if not list(points) and box is None:
        raise InputError("give a prompt: positive/negative points and/or a box on the frame")
    try:
        prompt = make_prompt(box, points, labels)
    except (ValueError, TypeError) as exc:
        raise InputError(f"bad prompt: {exc}") from None
    return {
        "frame": int(frame),
        "points": [list(p) for p in prompt.points],
        "labels": list(prompt.labels),
        "box": list(prompt.box) if prompt.box is not None else None,
    }


def check_refinement(refinement: Refinement, num_frames: int, width: int, height: int) -> None:
    """The frame in the video, the points and the box's corners inside the frame, else an InputError."""
    frame = refinement["frame"]
    if not 0 <= frame < num_frames:
        raise InputError(f"frame {frame} is outside the video: its frames are 0..{num_frames - 1}")
    corners = [refinement["box"][:2], refinement["box"][2:]] if refinement["box"] else []
    for x, y in [*refinement["points"], *corners]:
        if not (0 <= x <= width and 0 <= y <= height):
            raise InputError(
                f"the prompt ({x:g}, {y:g}) is outside the frame: x is 0..{width}, y is 0..{height} pixels"
            )


def already_applied(refinements: Sequence[Mapping], refinement: Refinement) -> bool:
    """The object's last refinement on that frame is this one: it holds already (nothing to compute)."""
    on_frame = [r for r in refinements if r["frame"] == refinement["frame"]]
    return bool(on_frame) and dict(on_frame[-1]) == dict(refinement)
