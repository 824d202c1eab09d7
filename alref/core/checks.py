"""Cheap checks of propagated masks, without the LLM: what the PVUW 2026 MeViS winner flags before
it asks an MLLM (arXiv 2604.00404), computed from per-frame mask areas and pairwise intersections.

- ``empty``: a referent's mask is empty on every frame;
- ``vanishing``: the mask is empty for a long span (at least :func:`vanish_span` frames) while the
  object has a mask both before and after it (it was tracked, lost, and found again);
- ``overlap``: two referents' masks overlap heavily (IoU >= 0.5 on at least half of the frames where
  both have a mask);
- ``whole_frame``: a mask covers most of the frame (>= 80 % of its pixels) on some frame.

Frame numbers are 0-based indices of the video, as everywhere in result.json.
"""

from __future__ import annotations

from collections.abc import Mapping

from alref.core.records import MaskCheck

OVERLAP_IOU = 0.5
OVERLAP_FRACTION = 0.5
WHOLE_FRAME = 0.8


def vanish_span(num_frames: int) -> int:
    """The shortest gap that counts as vanishing: 10 frames, or a tenth of a long video."""
    return max(10, num_frames // 10)


def _runs(frames: list[int]) -> list[tuple[int, int]]:
    """Inclusive runs of consecutive integers."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs


def mask_checks(
    areas: Mapping[int, Mapping[int, int]],
    intersections: Mapping[tuple[int, int], Mapping[int, int]],
    num_frames: int,
    frame_pixels: int,
) -> list[MaskCheck]:
    """The checks above. ``areas``: object -> frame -> mask pixels; ``intersections``: (a, b) with
    a < b -> frame -> pixels in both masks (frames without any may be absent)."""
    found: list[MaskCheck] = []
    for obj in sorted(areas):
        area = areas[obj]
        present = [f for f in range(num_frames) if area.get(f, 0) > 0]
        if not present:
            found.append(MaskCheck(check="empty", object=obj, frames=[0, max(0, num_frames - 1)],
                                   detail=f"the mask of object {obj} is empty on every frame"))  # fmt: skip
            continue
        gap = vanish_span(num_frames)
        missing = [f for f in range(present[0], present[-1] + 1) if area.get(f, 0) == 0]
        for first, last in _runs(missing):
            if last - first + 1 >= gap:
                found.append(MaskCheck(
                    check="vanishing", object=obj, frames=[first, last],
                    detail=f"object {obj} has no mask on frames {first}-{last} ({last - first + 1} frames) "
                           f"but is tracked before and after",
                ))  # fmt: skip
        big = [f for f in present if area[f] >= WHOLE_FRAME * frame_pixels]
        if big:
            share = max(area[f] for f in big) / frame_pixels
            found.append(MaskCheck(
                check="whole_frame", object=obj, frames=[big[0], big[-1]],
                detail=f"the mask of object {obj} covers {share:.0%} of the frame on {len(big)} frame(s)",
            ))  # fmt: skip
    for (a, b), inter in sorted(intersections.items()):
        both = [f for f in range(num_frames) if areas[a].get(f, 0) > 0 and areas[b].get(f, 0) > 0]
        heavy = []
        for f in both:
            i = inter.get(f, 0)
            union = areas[a][f] + areas[b][f] - i
            if union and i / union >= OVERLAP_IOU:
                heavy.append(f)
        if both and len(heavy) >= OVERLAP_FRACTION * len(both):
            found.append(MaskCheck(
                check="overlap", object=a, other=b, frames=[heavy[0], heavy[-1]],
                detail=f"objects {a} and {b} overlap (IoU >= {OVERLAP_IOU}) on {len(heavy)} of the "
                       f"{len(both)} frames where both have a mask",
            ))  # fmt: skip
    return found


def flagged_frames(check: MaskCheck) -> list[int]:
    """The frames worth showing for a check: the middle of a vanishing span (where the object is
    missing), else the span's ends."""
    first, last = check["frames"]
    if check["check"] == "vanishing":
        return [(first + last) // 2]
    if check["check"] == "empty":
        return []
    return sorted({first, last})


def spread(frames: list[int], count: int) -> list[int]:
    """``count`` of ``frames`` evenly spaced, the first and last included."""
    if count <= 0 or not frames:
        return []
    if len(frames) <= count:
        return list(frames)
    if count == 1:
        return [frames[len(frames) // 2]]
    return sorted({frames[round(i * (len(frames) - 1) / (count - 1))] for i in range(count)})


def verification_frames(
    areas: Mapping[int, Mapping[int, int]],
    objects: list[int],
    checks: list[MaskCheck],
    num_frames: int,
    count: int,
) -> list[int]:
    """The frames verification shows: ``count`` evenly spaced over the span where the objects have a
    mask (the whole video where none has), plus the frames the checks flagged (at most ``count``
    more), in order."""
    present = sorted({f for obj in objects for f, a in areas.get(obj, {}).items() if a > 0})
    span = list(range(present[0], present[-1] + 1)) if present else list(range(num_frames))
    chosen = set(spread(span, count))
    flagged = sorted({f for c in checks if c["object"] in objects or c.get("other") in objects
                      for f in flagged_frames(c)} - chosen)  # fmt: skip
    return sorted(chosen | set(spread(flagged, count)))
