"""Baseline pivot decisions: which frame and box each clip prompts SAM 2 with, and where
propagation starts."""

from alref.media.sampling import Clip
from alref.pipeline.baseline import ClipPivot, choose_pivot, samples_by_score, start_frame
from alref.tools.grounding import Detection


def det(score, box=(0, 0, 10, 10), phrase="square"):
    return Detection(box, score, phrase)


CLIP = Clip(index=1, start=50, end=100, samples=(50, 62, 74, 87, 99))


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
    assert p.frame == 62 and p.box == (1, 2, 3, 4) and p.score == 0.8 and p.valid
    assert "highest detection score" in p.reason


def test_first_and_middle_rules_and_their_fallback():
    dets = {50: [det(0.3)], 62: [det(0.9)], 74: [det(0.4)], 87: [], 99: []}
    assert choose_pivot(CLIP, dets, "first").frame == 50
    assert choose_pivot(CLIP, dets, "middle").frame == 74
    dets[74] = []
    p = choose_pivot(CLIP, dets, "middle")
    assert p.frame == 62 and "next-best" in p.reason


def test_clip_without_any_box_is_invalid():
    p = choose_pivot(CLIP, {f: [] for f in CLIP.samples}, "best")
    assert not p.valid and p.frame is None and p.box is None and "no candidate box" in p.reason


def test_samples_by_score_order():
    dets = {50: [det(0.3)], 62: [], 74: [det(0.6)], 87: [det(0.6)], 99: [det(0.1)]}
    assert samples_by_score(CLIP, dets) == [74, 87, 50, 99]


def _pivot(index, frame):
    clip = Clip(index, index * 10, index * 10 + 10, (index * 10,))
    return ClipPivot(
        clip, frame, (0, 0, 1, 1) if frame is not None else None, 0.5 if frame is not None else None, ""
    )


def test_start_frame_is_middle_clip_pivot_or_nearest_valid():
    pivots = [_pivot(0, 3), _pivot(1, 14), _pivot(2, 27)]
    assert start_frame(pivots)[0] == 14
    pivots[1] = _pivot(1, None)
    frame, reason = start_frame(pivots)
    assert frame == 3 and "nearest valid clip (0)" in reason  # ties go to the earlier clip
    assert start_frame([_pivot(0, None)])[0] is None
    # four clips: the middle is clip 1 ((4 - 1) // 2)
    assert start_frame([_pivot(i, i * 10 + 1) for i in range(4)])[0] == 11
