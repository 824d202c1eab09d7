"""alref: segment the object a sentence refers to, in every frame of a video, with no training.

>>> import alref
>>> result = alref.segment("dog.mp4", "the dog barking", out="runs/dog")
>>> result.status, result.mask(0).shape
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alref import threads as _threads

_threads.prepare()  # OMP_WAIT_POLICY before anything loads torch: every entry point imports alref first

__version__ = "0.1.0"

if TYPE_CHECKING:
    from alref.pipeline.result import SegmentResult

__all__ = ["segment", "refine", "SegmentResult", "__version__"]


def segment(
    video: str | Path,
    reference: str | Sequence[str],
    out: str | Path | None = None,
    *,
    force: bool = False,
    chat_model: Any = None,
    **settings: Any,
) -> SegmentResult:
    """Segment what ``reference`` (one sentence or several) refers to in every frame of ``video``.

    ``video`` is a video file or a folder of JPEG/PNG frames; ``out`` the output folder (default
    ``alref-out/<video name>``); ``settings`` are any :class:`alref.config.Settings` fields
    (``models="smoke"``, ``clip_frames=50``, ``device="cuda"``, …) and override the config file
    and the environment. ``chat_model`` is any LangChain chat model to reason with instead of the
    configured OpenAI-compatible server. Raises an :class:`alref.errors.AlrefError` subclass on bad input.
    """
    from alref.config import load_settings
    from alref.pipeline.result import SegmentResult
    from alref.pipeline.run import segment_video

    refs = [reference] if isinstance(reference, str) else list(reference)
    out_dir = Path(out) if out is not None else Path("alref-out") / Path(video).stem
    data = segment_video(video, refs, out_dir, load_settings(**settings), force=force, chat_model=chat_model)
    return SegmentResult(out_dir, data)


def refine(
    run: str | Path,
    object_id: int,
    frame: int,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] | None = None,
    box: Sequence[float] | None = None,
    *,
    video: str | Path | None = None,
    keep_work: bool = False,
    **settings: Any,
) -> SegmentResult:
    """Correct object ``object_id`` of the finished run in folder ``run`` with clicks and/or a box on
    ``frame`` (video pixels): ``points`` [(x, y), …] with ``labels`` (1 positive, 0 negative; default
    all positive), ``box`` (x0, y0, x1, y1). SAM 2 propagates the object again from the run's boxes and
    every refinement so far; the masks, masks.json, overlay.mp4 and result.json are replaced atomically
    and the prompt is recorded (``references[i]["refinements"]``). The same prompt again changes nothing.
    ``settings`` override the run's (``models="smoke"``, ``device="cuda"``, …). Raises an
    :class:`alref.errors.InputError` for a prompt outside the frame, a frame out of range, an unknown
    object, or a folder that is not a finished pivot-strategy run."""
    from alref.pipeline.refine import make_refinement, refine_run
    from alref.pipeline.result import SegmentResult

    kinds = [1] * len(points) if labels is None else list(labels)
    refinement = make_refinement(frame, points, kinds, box)
    data, _ = refine_run(run, object_id, refinement, given=settings, keep_work=keep_work, video=video)
    return SegmentResult(Path(run), data)


def __getattr__(name: str):
    if name == "SegmentResult":
        from alref.pipeline.result import SegmentResult

        return SegmentResult
    raise AttributeError(name)
