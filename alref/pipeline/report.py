"""result.json: what a run decided and why, with its inputs, settings, models and timings."""

from __future__ import annotations

import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import alref
from alref.config import Settings
from alref.core.baseline import sample_scores
from alref.core.records import Clip, ClipDecision, Detections, ReferenceDecision, TrackDecision
from alref.core.workspace import MASKS_FILE, OVERLAY_FILE, RESULT_FILE

SMOKE_NOTE = "made with the smoke profile: tiny random-weight models, the masks are meaningless"


def llm_label(settings: Settings, chat_model: Any) -> str:
    if chat_model is not None:
        return type(chat_model).__name__
    return f"{settings.llm_model} at {settings.llm_base_url or 'OpenAI'}"


#: why no later LLM call could succeed, as a user reads it (LLMClient.dead_kind)
DEAD_REASONS = {
    "cannot_see_images": "the model cannot see images",
    "connection": "the LLM server could not be reached",
    "auth": "the LLM server refused the API key",
    "not_found": "the LLM server does not know the model",
}


def _short_reason(text: str) -> str:
    text = " ".join(text.split()).split("; took ")[0]
    return text if len(text) <= 160 else text[:159] + "…"


def llm_decisions(
    results: list[ReferenceDecision], dead_kind: str | None, dead: str | None
) -> dict[str, Any]:
    """How the clips with candidates were really decided: by the LLM, or by the baseline fallback (and
    the most common reason why)."""
    decided = [
        d
        for r in results
        for d in r["clips"]
        if d["decided_by"] in ("llm", "fallback", "verification", "person")
    ]
    fell_back = [d for d in decided if d["decided_by"] == "fallback"]
    reason = None
    if fell_back:
        if dead_kind:
            reason = DEAD_REASONS.get(dead_kind) or _short_reason(dead or dead_kind)
        else:
            reasons = Counter(_short_reason(f) for d in fell_back for f in d.get("fallbacks", [])[:1])
            reason = reasons.most_common(1)[0][0] if reasons else None
    reasks = sum(max(0, n - 1) for d in decided for n in (d.get("attempts") or {}).values())
    return {"clips": len(decided), "by_llm": len(decided) - len(fell_back), "fell_back": len(fell_back),
            "reason": reason, "reasks": reasks,
            "fallbacks": sum(len(d.get("fallbacks", [])) for d in decided)}  # fmt: skip


def mode_label(result: dict[str, Any]) -> str:
    """``agent``, or ``agent (2 of 2 clips fell back: the model cannot see images)``."""
    mode, decisions = str(result.get("mode", "?")), result.get("llm_decisions") or {}
    if mode == "agent" and decisions.get("fell_back"):
        why = f": {decisions['reason']}" if decisions.get("reason") else ""
        what = "clips" if result.get("strategy", "pivot") == "pivot" else "references"
        return f"agent ({decisions['fell_back']} of {decisions['clips']} {what} fell back{why})"
    return mode


def apply_agent_outcome(
    result: dict[str, Any], results: list[ReferenceDecision], llm: Any, settings: Settings, chat_model: Any
) -> None:
    """The agent's mode, how the clips were really decided, and what its LLM client counted."""
    decisions = llm_decisions(results, llm.dead_kind, llm.dead)
    usage = dict(llm.usage())
    result["mode"] = "agent"
    result["llm_decisions"] = decisions
    result["mode_reason"] = f"GPT-PS pivot selection with {llm_label(settings, chat_model)}"
    if decisions["fell_back"]:
        result["mode_reason"] += "; " + mode_label(result).removeprefix("agent (").removesuffix(")")
    result["llm"] = usage | {"reasks": decisions["reasks"], "fallbacks": decisions["fallbacks"],
                             "base_url": settings.llm_base_url, "max_reasks": settings.llm_retries}  # fmt: skip


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
    result = _result(video, settings, models, refs, timer, run_key, sink,
                     "no LLM configured: GroundingDINO + SAM 2 baseline decisions")  # fmt: skip
    result["clips"] = [dict(c) for c in clips]
    return result


def _result(video, settings, models, refs, timer, run_key, sink, mode_reason: str) -> dict[str, Any]:
    """result.json around its references: status, mode, input, settings, models, timings, outputs."""
    found = sum(r["status"] == "ok" for r in refs)
    status = "ok" if found == len(refs) else ("not_found" if found == 0 else "partial")
    result: dict[str, Any] = {
        "alref_version": alref.__version__,
        "status": status,
        "mode": "baseline",
        "mode_reason": mode_reason,
        "strategy": settings.strategy,
        "smoke": models.smoke,
    }
    if models.smoke:
        result["smoke_note"] = SMOKE_NOTE
    result |= {
        "input": video.info.to_dict(),
        "references": refs,
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


def build_tracks_result(video, settings, models, decisions: list[TrackDecision], sink, timer, run_key):
    """result.json of the tracks strategy: per reference the concepts tried, the candidate tracks, each
    judging round's frames and labels, and the accepted tracks."""
    refs = []
    for d in decisions:
        status = "not_found" if d["not_found"] or not d["accepted"] else "ok"
        candidates = [{k: t[k] for k in ("id", "score", "frames")} | {"first_frame": t["frames"][0] if t["frames"] else None,
                       "number": n} for n, t in enumerate(d["candidates"], start=1)]  # fmt: skip
        refs.append({"id": d["id"], "text": d["text"], "status": status, "reason": d["reason"],
                     "decided_by": d["decided_by"], "concept": d["concept"], "concepts_tried": d["concepts_tried"],
                     "candidates": candidates, "rounds": d["rounds"], "accepted": d["accepted"],
                     "masks": sink.summary(d["id"])} | ({"ambiguity": d["ambiguity"]} if d.get("ambiguity") else {}))  # fmt: skip
    return _result(video, settings, models, refs, timer, run_key, sink,
                   "no LLM configured: the highest-scoring SAM 3 track of each sentence's concept")  # fmt: skip


def apply_tracks_outcome(result: dict[str, Any], decisions: list[TrackDecision], llm: Any, settings: Settings,
                         chat_model: Any) -> None:  # fmt: skip
    """The agent's mode for the tracks strategy, how the references were really decided, the LLM's counts."""
    fell_back = [d for d in decisions if d["decided_by"] == "fallback"]
    reason = DEAD_REASONS.get(llm.dead_kind or "") or (
        _short_reason(fell_back[0]["reason"]) if fell_back else None
    )
    result["mode"] = "agent"
    result["llm_decisions"] = {"references": len(decisions), "by_llm": len(decisions) - len(fell_back),
                               "fell_back": len(fell_back), "clips": len(decisions), "reason": reason}  # fmt: skip
    result["mode_reason"] = (
        f"track reasoning (SAM 3 concept tracks judged) with {llm_label(settings, chat_model)}"
    )
    if fell_back:
        result["mode_reason"] += f"; {len(fell_back)} of {len(decisions)} references fell back: {reason}"
    result["llm"] = dict(llm.usage()) | {
        "base_url": settings.llm_base_url,
        "max_reasks": settings.llm_retries,
    }
