"""ChatSession.refine: a person's points and/or box on one frame of one object, kept in the object's data
(so the masks digest, undo, the snapshot and a resumed conversation carry it), checked in one line, and
given to the video session exactly as `alref refine` gives it (boxes first, then the refinements in
order, through ``add_points``); with the smoke SAM 2 its masks equal the canonical session's calls."""

from __future__ import annotations

import numpy as np
import pytest
import synth
from click_segmenter import ClickSegmenter

from alref.agent.chat.session import ChatSession
from alref.config import load_settings
from alref.errors import InputError
from alref.media.writers import rle_to_mask

W, H, N = 160, 120, 20  # short_shapes_mp4 (conftest.py)
RED = [float(v) for v in synth.red_square_box(0, N, W, H)]


def session_of(tmp_path, video, standin) -> ChatSession:
    return ChatSession(video, tmp_path / "chat", load_settings(models="smoke", segmentation=standin))


def present(session: ChatSession, obj: int) -> list[int]:
    return [f for f, rle in sorted(session.masks[obj].items()) if rle_to_mask(rle).any()]


def calls(session: ChatSession) -> list[tuple]:
    return session._session.calls  # the stand-in's record of every call, in order


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"object_id": 7, "frame": 3, "points": [[10, 10]], "labels": [1]}, "there is no object 7; the objects are: 1"),
        ({"object_id": 1, "frame": N, "points": [[10, 10]], "labels": [1]}, f"frame {N} does not exist"),
        ({"object_id": 1, "frame": -1, "points": [[10, 10]], "labels": [1]}, "frame -1 does not exist"),
        ({"object_id": 1, "frame": 3, "points": [[W + 1, 10]], "labels": [1]}, f"the prompt ({W + 1}, 10) is outside the frame"),
        ({"object_id": 1, "frame": 3, "box": [0, 0, 20, H + 5]}, f"the prompt (20, {H + 5}) is outside the frame"),
        ({"object_id": 1, "frame": 3, "points": [[10, 10], [20, 20]], "labels": [1]}, "2 point(s) but 1 label(s)"),
        ({"object_id": 1, "frame": 3, "points": [[10, 10]], "labels": [2]}, "a point's label is 1 (positive) or 0"),
        ({"object_id": 1, "frame": 3, "box": [50, 50, 10, 10]}, "is not x1 <= x2, y1 <= y2"),
        ({"object_id": 1, "frame": 3}, "give a prompt: positive/negative points and/or a box"),
    ],
)  # fmt: skip
def test_a_bad_refinement_is_one_clear_line_and_changes_nothing(
    tmp_path, short_shapes_mp4, standin, args, message
):
    session = session_of(tmp_path, short_shapes_mp4, standin)
    session.set_object([(0, RED)], "red square")
    before, digest, history = session.masks, session.masks_digest(session.objects), len(session.history)
    with pytest.raises(InputError) as caught:
        session.refine(**args)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert session.masks == before and session.masks_digest(session.objects) == digest
    assert len(session.history) == history and "refinements" not in session.objects[1]


def test_refine_adds_the_mask_where_it_was_missing_and_undo_restores(tmp_path, short_shapes_mp4, standin):
    session = session_of(tmp_path, short_shapes_mp4, standin)
    session.set_object([(0, RED)], "red square")
    assert present(session, 1) == [0, 1, 2]  # the stand-in reaches 2 frames from a prompt
    before, digest = session.masks, session.masks_digest(session.objects)

    result = session.refine(1, 12, [[40, 50], [44, 50]], [1, 0])
    refinement = {"frame": 12, "points": [[40.0, 50.0], [44.0, 50.0]], "labels": [1, 0], "box": None}
    assert session.objects[1]["refinements"] == [refinement]
    assert result["object_id"] == 1 and result["frame"] == 12 and result["mask_pixels_on_frame"] > 0
    assert result["refinements"] == [refinement]  # the summary the model sees
    assert present(session, 1) == [0, 1, 2, 10, 11, 12, 13, 14]
    mask = rle_to_mask(session.masks[1][12])
    assert mask[50, 36] and not mask[50, 44]  # the positive disc, less the negative one
    assert session.masks_digest(session.objects) != digest
    assert session.workspace.chat_masks(session.masks_digest(session.objects)).is_file()

    # the same prompt again on that frame is already applied: nothing runs, no undo step
    runs = len(calls(session))
    again = session.refine(1, 12, [[40, 50], [44, 50]], [1, 0])
    assert again["already_applied"] and len(calls(session)) == runs and len(session.history) == 2

    session.undo()  # the stored masks of the objects before: no model runs
    assert "refinements" not in session.objects[1] and session.masks == before
    assert len(calls(session)) == runs


def test_the_refinement_travels_in_the_snapshot_and_a_restore_needs_no_model(
    tmp_path, short_shapes_mp4, standin
):
    session = session_of(tmp_path, short_shapes_mp4, standin)
    session.set_object([(0, RED)], "red square")
    session.refine(1, 12, [[40, 50]], [1], box=[30, 40, 60, 70])
    snapshot = session.snapshot()
    assert snapshot["objects"]["1"]["refinements"][0]["box"] == [30.0, 40.0, 60.0, 70.0]
    restored = session_of(tmp_path, short_shapes_mp4, standin)  # the same conversation in a new process
    restored.restore(snapshot)
    assert restored._session is None  # the stored masks of these objects, no propagation
    assert restored.objects == session.objects and restored.masks == session.masks
    restored.undo()
    assert "refinements" not in restored.objects[1] and present(restored, 1) == [0, 1, 2]


def test_an_object_without_refinements_keeps_its_digest(tmp_path, short_shapes_mp4, standin):
    """Masks stored before refinements existed still match their objects."""
    session = session_of(tmp_path, short_shapes_mp4, standin)
    objects = {1: {"name": "a", "reference": "a", "prompts": [[0, RED]], "silent_frames": []}}
    assert session.masks_digest(objects) == session.masks_digest(
        objects | {1: objects[1] | {"refinements": []}}
    )


def test_the_session_is_prompted_as_alref_refine_prompts_it(tmp_path, short_shapes_mp4, standin):
    """Per object, its boxes then its refinements in order (add_points), as propagate_all does for a
    run's references with their refinements."""
    from alref.media.masks import MaskSink
    from alref.pipeline.stages import propagate_all
    from alref.progress import Reporter

    session = session_of(tmp_path, short_shapes_mp4, standin)
    session.set_object([(0, RED), (10, [20, 20, 60, 60])], "red square")
    session.set_object([(0, [100, 10, 150, 60])], "other")
    session.refine(1, 12, [[40, 50]], [1])
    session.refine(2, 5, [[120, 30], [125, 35]], [1, 0], box=[100, 10, 150, 60])
    session.refine(1, 4, [], [], box=[10, 10, 50, 50])
    last = max(i for i, c in enumerate(calls(session)) if c == ("reset",))  # the last propagation's prompts
    chat_calls = [c for c in calls(session)[last:] if c[0] in ("add_box", "add_points")]

    def clips(obj: int) -> list[dict]:
        return [{"clip": i, "valid": True, "pivot_frame": f, "pivot_box": b}
                for i, (f, b) in enumerate(session.objects[obj]["prompts"])]  # fmt: skip

    refs = [{"id": obj, "text": d["name"], "clips": clips(obj), "not_found": None} for obj, d in sorted(session.objects.items())]  # fmt: skip
    segmenter = ClickSegmenter()
    sink = MaskSink(tmp_path / "run", session.info, {1: "red square", 2: "other"})
    propagate_all(segmenter, list(range(N)), session.info, refs, sink, Reporter(),
                  refinements={obj: d["refinements"] for obj, d in session.objects.items()})  # fmt: skip
    run_calls = [c for c in segmenter.sessions[0].calls if c[0] in ("add_box", "add_points")]
    assert chat_calls == run_calls
    assert [c[0] for c in chat_calls] == [
        "add_box",
        "add_box",
        "add_points",
        "add_points",
        "add_box",
        "add_points",
    ]


def test_a_new_object_from_clicks_alone_or_a_box(tmp_path, short_shapes_mp4, standin):
    session = session_of(tmp_path, short_shapes_mp4, standin)
    made = session.add_object("ball", 15, [[80, 60]], [1])
    assert made["object_id"] == 1 and made["mask_pixels_on_frame"] > 0
    assert session.objects[1]["prompts"] == [] and session.objects[1]["refinements"][0]["frame"] == 15
    assert present(session, 1) == [13, 14, 15, 16, 17]
    assert calls(session)[-1] == ("propagate", 15)  # from its first prompt
    assert session.preview(1)  # the preview is of its first prompt's frame
    boxed = session.add_object("box", 3, box=[10, 10, 30, 30])
    assert session.objects[boxed["object_id"]]["prompts"] == [[3, [10.0, 10.0, 30.0, 30.0]]]
    assert "refinements" not in session.objects[boxed["object_id"]]
    with pytest.raises(InputError, match="give a prompt"):
        session.add_object("nothing", 3)


def test_refine_on_the_smoke_sam2_equals_the_canonical_calls(tmp_path, short_shapes_mp4, one_torch_thread):
    """The chat's masks after a refinement are those of add_box then add_points then propagate on the
    video session (SegmentationSession: the canonical transformers semantics, tested elsewhere)."""
    settings = load_settings(models="smoke")
    session = ChatSession(short_shapes_mp4, tmp_path / "chat", settings)
    session.set_object([(0, RED)], "red square")
    session.refine(1, 6, [[40, 50], [90, 20]], [1, 0], box=[20, 30, 70, 80])
    seg = session._segmentation()
    seg.reset()
    seg.add_box(0, 1, RED)
    seg.add_points(6, 1, [[40, 50], [90, 20]], [1, 0], [20, 30, 70, 80])
    direct = dict(seg.propagate(0))
    assert set(direct) == set(range(N))
    for frame, masks in direct.items():
        assert np.array_equal(rle_to_mask(session.masks[1][frame]), masks[1]), frame


def _refining_server(llm_server) -> None:
    """Segments the red square, or (a message naming "frame 12") refines object 1 there."""

    def answer(body):
        from llm_server import Reply, tool_reply

        if body["messages"][-1]["role"] == "tool":
            return Reply("Done.")
        text = body["messages"][-1]["content"]
        if "frame 12" in str(text):
            return tool_reply(
                "r", "refine_object", {"object_id": 1, "frame": 12, "positive_points": [[40, 50]]}
            )
        return tool_reply("s", "segment_box", {"frame": 0, "box": RED, "name": "red square"})

    llm_server.default = answer


REFINED = {"frame": 12, "points": [[40.0, 50.0]], "labels": [1], "box": None}


@pytest.mark.slow
def test_the_langgraph_chat_graph_has_refine_object(tmp_path, short_shapes_mp4, standin, llm_server):
    from langchain_core.messages import HumanMessage

    from alref.app.graphs import chat_graph

    _refining_server(llm_server)
    context = {"models": "smoke", "segmentation": standin, "llm": "m", "llm_base_url": llm_server.base_url,
               "video": str(short_shapes_mp4), "out": str(tmp_path / "c")}  # fmt: skip
    config = {"configurable": {"thread_id": "refine-thread"}}
    chat_graph.invoke({"messages": [HumanMessage(content="segment the red square")]}, config, context=context)
    state = chat_graph.invoke({"messages": [HumanMessage(content="it is at 40,50 on frame 12")]}, config,
                              context=context)  # fmt: skip
    assert state["objects"]["objects"]["1"]["refinements"] == [REFINED]
    sent = llm_server.chat_requests[-1]
    assert "refine_object" in {t["function"]["name"] for t in sent["tools"]}


@pytest.mark.slow
def test_the_app_session_refines_with_progress_and_saves_it(tmp_path, short_shapes_mp4, standin, llm_server):
    from alref.app.session import AppConfig, TabSession

    _refining_server(llm_server)
    given = {"models": "smoke", "segmentation": standin, "llm": "m", "llm_base_url": llm_server.base_url,
             "llm_backoff": 0}  # fmt: skip
    tab = TabSession(AppConfig(given=given, db=tmp_path / "db.sqlite", out=tmp_path / "app", chat_out=tmp_path / "chats"))  # fmt: skip
    shown: list[tuple[float | None, str]] = []
    try:
        tab.open(short_shapes_mp4)
        tab.ask("segment the red square")
        result = tab.refine(1, 12, [[40, 50]], [1], show=lambda f, t: shown.append((f, t)))
        assert result["mask_pixels_on_frame"] > 0 and tab.session.objects[1]["refinements"] == [REFINED]
        assert shown[-2] == (1.0, f"propagating {N}/{N}") and shown[-1] == (None, "writing overlay.mp4")
        assert [f for f, _ in shown if f is not None] == [k / N for k in range(1, N + 1)]
        assert tab.history[-1][1].startswith("Corrected object 1 on frame 12 and propagated it again")
        assert tab.session.workspace.overlay.is_file()
        saved = tab.chat.graph.get_state(tab.chat.config).values["objects"]  # the thread has it: --resume
        assert saved["objects"]["1"]["refinements"] == [REFINED]
        assert tab.session.show is not None and tab.refine(1, 12, [[40, 50]], [1])["already_applied"]
        made = tab.refine(None, 5, [], [], box=[10, 10, 40, 40], name="  box  ")
        assert tab.session.objects[made["object_id"]]["name"] == "box"
        tab.edit("undo")
        assert set(tab.session.objects) == {1}
    finally:
        tab.close()


def test_a_segmenter_without_point_prompts_is_said_before_any_change(tmp_path, short_shapes_mp4, standin):
    from types import SimpleNamespace

    session = session_of(tmp_path, short_shapes_mp4, standin)
    session.set_object([(0, RED)], "red square")
    objects, history = session.snapshot(), len(session.history)
    session._session = SimpleNamespace()  # a plugin's session with add_box only
    with pytest.raises(InputError, match=f"the segmentation tool {standin} takes no point prompts"):
        session.refine(1, 5, [[10, 10]], [1])
    with pytest.raises(InputError, match="takes no point prompts"):
        session.add_object("x", 5, [[10, 10]], [1])
    assert session.snapshot() == objects and len(session.history) == history
