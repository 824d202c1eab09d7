"""The page's one-shot form: `alref segment` on the open video, into ``OUT/runs/<name>-<id>``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from alref.app.files import zip_masks
from alref.app.progress import Show, WebReporter
from alref.config import Settings
from alref.core.workspace import Workspace
from alref.errors import InputError


def segment_run(settings: Settings, root: Path, video: Path, audio: Path | None, reference: str, kind: str,
                show: Show) -> dict[str, Any]:  # fmt: skip
    """One run (``kind``: "sentence", or "sound" with an optional sentence naming the sounding object):
    its result, folder, trace, files to download (masks.zip, overlay.mp4, result.json) and notes."""
    from alref.pipeline.audio import VIDEO_TRACK, AudioRequest
    from alref.pipeline.run import segment_video

    reference = reference.strip()
    request = None
    if kind == "sound":
        request = AudioRequest(str(audio) if audio else VIDEO_TRACK, reference or None)
        references: list[str] = []
    elif not reference:
        raise InputError('type what to segment, e.g. "the red square"')
    else:
        references = [reference]
    out = root / "runs" / f"{video.stem}-{uuid.uuid4().hex[:6]}"
    reporter = WebReporter(show)
    result = segment_video(video, references, out, settings, reporter, audio=request)
    workspace = Workspace(out)
    files = [zip_masks(out)]
    if workspace.overlay.is_file():
        files.append(workspace.overlay)
    files.append(workspace.result)
    return {"result": result, "out": out, "trace": workspace.trace, "files": files, "notes": reporter.notes}
