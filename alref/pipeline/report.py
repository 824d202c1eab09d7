"""result.json: what a run decided and why, with its inputs, settings, models and timings."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import alref
from alref.config import Settings
from alref.core.baseline import sample_scores
from alref.core.records import Clip, ClipDecision, Detections, ReferenceDecision
from alref.core.workspace import MASKS_FILE, OVERLAY_FILE, RESULT_FILE

SMOKE_NOTE = "made with the smoke profile: tiny random-weight models, the masks are meaningless"


def llm_label(settings: Settings, chat_model: Any) -> str:
    if chat_model is not None:
        return type(chat_model).__name__
    return f"{settings.llm_model} at {settings.llm_base_url or 'OpenAI'}"


def apply_agent_outcome(result: dict[str, Any], usage: Any, settings: Settings, chat_model: Any) -> None:
    """The agent's mode and what its LLM client counted."""
    result["mode"] = "agent"
    result["mode_reason"] = f"GPT-PS pivot selection with {llm_label(settings, chat_model)}"
    result["llm"] = dict(usage) | {"base_url": settings.llm_base_url, "retries": settings.llm_retries}


def apply_audio_plan(result: dict[str, Any], plan: Any, sink: Any, sources: Any) -> None:
    """Sound as the reference: categories, events and removed frames; a video with no sounding
    object is not_found."""
    from alref.pipeline.audio import frame_ranges

    result["audio"] = plan.report | {"models": [s.describe() for s in sources]}
    by_id = {c["id"]: c for c in plan.categories}
    for ref in result["references"]:
        category = by_id.get(ref["id"])
        if category:
            ref["category"] = category["category"]
            ref["removed_frames"] = frame_ranges(sink.removed.get(ref["id"], ()))
    if not plan.categories:
        result["status"] = "not_found"
        result["reason"] = "no sounding object with a visible source was found in the audio"


def finished_result(out: Path, run_key: str) -> dict[str, Any] | None:
    path = out / RESULT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("run_key") != run_key:
        return None
    needed = [out / MASKS_FILE, out / "masks"] + (
        [out / OVERLAY_FILE] if data.get("outputs", {}).get("overlay") else []
    )
    return data if all(p.exists() for p in needed) else None


def clip_entry(decision: ClipDecision, detections: Detections) -> dict[str, Any]:
    """A clip of result.json: the decision, with the sampled frames' top scores and rounded numbers."""
    entry: dict[str, Any] = {k: decision[k] for k in ("clip", "start", "end", "samples")}  # type: ignore[literal-required]
    entry["sample_scores"] = sample_scores(decision, detections)
    entry |= {k: v for k, v in decision.items() if k not in entry and k != "ref_id"}
    box, score = decision["pivot_box"], decision["pivot_score"]
    entry["pivot_box"] = [round(v, 2) for v in box] if box else None
    entry["pivot_score"] = round(score, 4) if score is not None else None
    return entry


def build_result(
    video, settings, models, clips: list[Clip], detections, results: list[ReferenceDecision], starts, sink,
    timer, run_key,
):  # fmt: skip
    refs = []
    for r in results:
        obj = r["id"]
        started = starts[obj]["frame"] is not None
        if r["not_found"] or not started:
            status, reason = (
                "not_found",
                r["not_found"] or "no candidate box in any sampled frame of any clip",
            )
        else:
            status, reason = "ok", starts[obj]["reason"]
        refs.append(
            {
                "id": obj,
                "text": r["text"],
                "status": status,
                "reason": reason,
                "start_frame": starts[obj]["frame"],
                "propagated_from": starts[obj].get("propagated_from"),
                "clips": [clip_entry(d, detections[obj]) for d in r["clips"]],
                "masks": sink.summary(obj),
            }
        )
    found = sum(r["status"] == "ok" for r in refs)
    status = "ok" if found == len(refs) else ("not_found" if found == 0 else "partial")
    result: dict[str, Any] = {
        "alref_version": alref.__version__,
        "status": status,
        "mode": "baseline",
        "mode_reason": "no LLM configured: GroundingDINO + SAM 2 baseline decisions",
        "smoke": models.smoke,
    }
    if models.smoke:
        result["smoke_note"] = SMOKE_NOTE
    result |= {
        "input": video.info.to_dict(),
        "references": refs,
        "clips": [dict(c) for c in clips],
        "settings": settings.public_dict(),
        "models": models.describe(),
        "device": models.device,
        "timings_s": timer.times,
        "outputs": {
            "masks": "masks",
            "masks_json": "masks.json",
            "objects": "objects" if sink.multi else None,
            "palette": "palette" if sink.multi else None,
            "overlay": "overlay.mp4" if settings.overlay else None,
            "result": "result.json",
        },
        "environment": {"python": platform.python_version(), "platform": platform.platform()},
        "run_key": run_key,
    }
    return result
