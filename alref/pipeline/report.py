"""result.json: what a run decided and why, with its inputs, settings, models and timings."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import alref
from alref.config import Settings
from alref.media.sampling import Clip
from alref.trace.record import Tracer, read_events

SMOKE_NOTE = "made with the smoke profile: tiny random-weight models, the masks are meaningless"


def llm_label(settings: Settings, chat_model: Any) -> str:
    if chat_model is not None:
        return type(chat_model).__name__
    return f"{settings.llm_model} at {settings.llm_base_url or 'OpenAI'}"


def llm_usage(tracer: Tracer, llm: Any) -> dict[str, Any]:
    """Totals over this run's LLM calls, from the trace."""
    calls = [e for e in read_events(tracer.folder) if e.get("kind") == "llm_call"]
    total = lambda key: sum(e.get(key) or 0 for e in calls if not e.get("cache_hit"))  # noqa: E731
    return {
        "model": llm.model_name,
        "asks": len(calls),
        "http_calls": llm.calls,
        "cache_hits": sum(1 for e in calls if e.get("cache_hit")),
        "failed": sum(1 for e in calls if e.get("error")),
        "prompt_tokens": total("prompt_tokens"),
        "completion_tokens": total("completion_tokens"),
        "image_tokens_estimate": total("image_tokens_estimate"),
    }


def apply_agent_outcome(
    result: dict[str, Any], not_found: dict[int, str], llm_summary, settings: Settings, chat_model
) -> None:
    if llm_summary is None:
        return
    result["mode"] = "agent"
    result["mode_reason"] = f"GPT-PS pivot selection with {llm_label(settings, chat_model)}"
    result["llm"] = llm_summary | {"base_url": settings.llm_base_url, "retries": settings.llm_retries}
    for ref in result["references"]:
        if ref["id"] in not_found:
            ref["status"], ref["reason"] = "not_found", not_found[ref["id"]]
    found = sum(r["status"] == "ok" for r in result["references"])
    result["status"] = (
        "ok" if found == len(result["references"]) else ("not_found" if found == 0 else "partial")
    )


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
    path = out / "result.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("run_key") != run_key:
        return None
    needed = [out / "masks.json", out / "masks"] + (
        [out / "overlay.mp4"] if data.get("outputs", {}).get("overlay") else []
    )
    return data if all(p.exists() for p in needed) else None


def build_result(
    video, references, settings, models, clips: list[Clip], detections, pivots, starts, sink, timer, run_key
):
    refs = []
    for obj, ref in enumerate(references, start=1):
        found = starts[obj]["frame"] is not None
        refs.append(
            {
                "id": obj,
                "text": ref,
                "status": "ok" if found else "not_found",
                "reason": starts[obj]["reason"]
                if found
                else "no candidate box in any sampled frame of any clip",
                "start_frame": starts[obj]["frame"],
                "propagated_from": starts[obj].get("propagated_from"),
                "clips": [p.to_dict(detections[obj]) for p in pivots[obj]],
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
        "clips": [
            {"index": c.index, "start": c.start, "end": c.end, "samples": list(c.samples)} for c in clips
        ],
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
