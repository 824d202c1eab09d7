"""Baseline pivot decisions: which frame and box each clip prompts SAM 2 with, and where
propagation starts."""

from alref.core.baseline import choose_pivot, samples_by_score, start_frame
from alref.core.records import Clip, ClipDecision, Detection


def det(score, box=(0, 0, 10, 10), phrase="square"):
    return Detection(box, score, phrase)


CLIP = Clip(index=1, start=50, end=100, samples=[50, 62, 74, 87, 99])


def test_best_rule_takes_highest_top_score_and_its_top_box():
    dets = {
        50: [det(0.3)],
        62: [det(0.8, (1, 2, 3, 4)), det(0.5)],
        74: [],
        87: [det(0.8, (5, 5, 9, 9))],
        99: [det(0.2)],
    }
    p = choose_pivot(CLIP, dets, "best")
    # tie at 0.8: the earlier frame wins
    assert (
        p["pivot_frame"] == 62 and p["pivot_box"] == [1, 2, 3, 4] and p["pivot_score"] == 0.8 and p["valid"]
    )
    assert "highest detection score" in p["reason"] and p["decided_by"] == "baseline" and p["clip"] == 1


def test_first_and_middle_rules_and_their_fallback():
    dets = {50: [det(0.3)], 62: [det(0.9)], 74: [det(0.4)], 87: [], 99: []}
    assert choose_pivot(CLIP, dets, "first")["pivot_frame"] == 50
    assert choose_pivot(CLIP, dets, "middle")["pivot_frame"] == 74
    dets[74] = []
    p = choose_pivot(CLIP, dets, "middle")
    assert p["pivot_frame"] == 62 and "next-best" in p["reason"]


def test_clip_without_any_box_is_invalid():
    p = choose_pivot(CLIP, {f: [] for f in CLIP["samples"]}, "best")
    assert not p["valid"] and p["pivot_frame"] is None and p["pivot_box"] is None
    assert "no candidate box" in p["reason"]


def test_samples_by_score_order():
    dets = {50: [det(0.3)], 62: [], 74: [det(0.6)], 87: [det(0.6)], 99: [det(0.1)]}
    assert samples_by_score(CLIP, dets) == [74, 87, 50, 99]


def _pivot(index, frame):
    valid = frame is not None
    return ClipDecision(ref_id=1, clip=index, start=index * 10, end=index * 10 + 10, samples=[index * 10],
                        valid=valid, pivot_frame=frame, pivot_box=[0, 0, 1, 1] if valid else None,
                        pivot_score=0.5 if valid else None, decided_by="baseline", reason="")  # fmt: skip


def test_start_frame_is_middle_clip_pivot_or_nearest_valid():
    pivots = [_pivot(0, 3), _pivot(1, 14), _pivot(2, 27)]
    assert start_frame(pivots)[0] == 14
    pivots[1] = _pivot(1, None)
    frame, reason = start_frame(pivots)
    assert frame == 3 and "nearest valid clip (0)" in reason  # ties go to the earlier clip
    assert start_frame([_pivot(0, None)])[0] is None
    # four clips: the middle is clip 1 ((4 - 1) // 2)
    assert start_frame([_pivot(i, i * 10 + 1) for i in range(4)])[0] == 11
