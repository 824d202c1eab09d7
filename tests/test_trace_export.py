"""`alref trace list` / `export`: runs found with their counts, the cost estimate, and the HTML page:
self-contained, LLM text escaped, and in headless Chromium it renders its images while a script planted
in an LLM answer does not run."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import synth
from agent_script import Script
from PIL import Image
from typer.testing import CliRunner

import alref
from alref.trace.cli import trace_export, trace_list
from alref.trace.cost import cost_estimate, cost_line, price_of
from alref.trace.html import export_html
from alref.trace.record import Tracer, read_events
from alref.trace.runs import list_runs

PAYLOAD = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _frame(start: int | None, attempt: int) -> str:
    """Clip 0: a bad answer, then a good one. Clip 1: never a valid frame (the baseline takes over)."""
    if start == 0 and attempt > 1:
        return json.dumps({"reasoning": "the square is whole", "frame": 2})
    return "I pick frame 9."


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Script]:
    """runs/r1: an agent run (2 clips) whose LLM answers carry PAYLOAD; runs/x/y/z: an unfinished run
    three levels down; runs/a/b/c/d: one four levels down (too deep to be listed)."""
    root = tmp_path_factory.mktemp("runs")
    video = synth.write_shapes_video(root.parent / "shapes20.mp4", num_frames=20)
    script = Script(
        describe_event=f"A red square moves right. {PAYLOAD}",
        choose_frame=_frame,
        choose_box=json.dumps({"reasoning": PAYLOAD, "box": 1}),
    )
    alref.segment(video, "the red square", out=root / "r1", chat_model=script.model(), models="smoke",
                  clip_frames=10, samples=5, overlay=False, cache=False, llm_retries=1)  # fmt: skip
    Tracer(root / "x" / "y" / "z" / "trace").event("run_start", references=["a", "b"], run_key="k")
    Tracer(root / "a" / "b" / "c" / "d" / "trace").event("run_start", references=["a"], run_key="k")
    return root, script


@pytest.mark.slow
def test_list_runs_finds_the_runs_with_their_counts(runs):
    root, script = runs
    found = {Path(r["path"]).relative_to(root).as_posix(): r for r in list_runs(root)}
    assert set(found) == {"r1", "x/y/z"}
    r1, events = found["r1"], read_events(root / "r1" / "trace")
    calls = [e for e in events if e["kind"] == "llm_call"]
    assert r1["status"] == "ok" and r1["references"] == 1 and r1["clips"] == 2
    assert r1["mode"].startswith(
        "agent (1 of 2 clips fell back: no valid answer after 2 attempts"
    )  # what decided
    # the second clip's syntax question is the first one's, answered once by the client (a cache hit)
    assert r1["llm_calls"] == len(calls) == len(script.requests) + 1 == 13  # with the verification
    assert [e["step"] for e in calls if e["cache_hit"]] == ["syntax_analysis"]
    paid = [e for e in calls if not e["cache_hit"]]
    assert r1["tokens"] == sum(e["prompt_tokens"] + e["completion_tokens"] for e in paid) > 0
    assert r1["cost_usd"] == 0 and r1["unknown_price"] == ["scripted"] and r1["models"] == ["scripted"]
    assert r1["started"] == events[0]["ts"] and r1["duration_s"] > 0
    unfinished = found["x/y/z"]
    assert unfinished["status"] == "unfinished" and unfinished["references"] == 2
    assert unfinished["llm_calls"] == 0 and unfinished["clips"] == 0


@pytest.mark.slow
def test_the_page_escapes_llm_text_and_is_self_contained(runs, tmp_path):
    root, _ = runs
    page = export_html(root / "r1", tmp_path / "page.html").read_text(encoding="utf-8")
    assert html.escape(PAYLOAD, quote=True) in page  # the reasoning, shown as text
    assert "<script" not in page.lower() and "<img src=x" not in page and 'onerror="' not in page
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}' in page
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert len(sources) >= 6 and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert all(h.startswith("#img") for h in re.findall(r'\shref="([^"]*)"', page))
    assert "http://" not in page and "https://" not in page
    for section in ("Images the LLM saw", "Candidate boxes", "Masks", "frame 2 (pivot, with its box)"):
        assert section in page
    assert "invalid answer (choose_frame attempt 1)" in page and "fallback in choose_frame" in page
    assert "decided by fallback" in page and "decided by llm" in page
    assert len(page) < 2_000_000


def test_image_paths_outside_the_run_are_not_followed(tmp_path):
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "secret.jpg")
    tracer = Tracer(tmp_path / "run" / "trace")
    tracer.event("run_start", references=["<b>bold</b>"], run_key="k")
    message = {"role": "user", "text": "look", "images": ["../../secret.jpg", str(tmp_path / "secret.jpg")]}
    tracer.event("llm_call", step="choose_frame", context={"ref": 1, "clip": 0, "attempt": 1},
                 model="<i>m</i>", messages=[message], ok=True, answer="fine")  # fmt: skip
    page = export_html(tmp_path / "run", tmp_path / "p.html").read_text(encoding="utf-8")
    assert "data:image" not in page and "image not found" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "&lt;i&gt;m&lt;/i&gt;" in page and "<b>bold" not in page


def test_cost_estimate():
    def call(model, inp, out, **more):
        return {"kind": "llm_call", "model": model, "prompt_tokens": inp, "completion_tokens": out, **more}

    events = [
        {"kind": "run_start"},
        call("gpt-4o", 1000, 500),  # 1000 * 2.50 / 1e6 + 500 * 10.00 / 1e6 = 0.0075
        call("gpt-4o-mini-2024-07-18", 2000, 100),  # 0.0003 + 0.00006 = 0.00036
        call("gpt-4o", 9999, 999, cache_hit=True),  # free
        call("llava:13b", 300, 30),  # unknown price: $0
        call("openai/gpt-4.1", None, 10, image_tokens_estimate=765),  # 765 * 2 / 1e6 + 10 * 8 / 1e6
        call("gpt-4o", None, None, ok=False, error_kind="timeout"),
        call(
            "gpt-4o", None, None, ok=False, error_kind="server_error", image_tokens_estimate=4420
        ),  # rejected
    ]
    c = cost_estimate(events)
    assert c["usd"] == pytest.approx(0.0075 + 0.00036 + 0.00161)
    assert (c["calls"], c["cached_calls"], c["failed_calls"]) == (7, 1, 2)
    assert (c["input_tokens"], c["output_tokens"], c["image_tokens_estimate"]) == (4065, 640, 765)
    # what the server counted, and the estimate for the call it gave no usage for, kept apart
    assert (c["server_input_tokens"], c["estimated_input_tokens"], c["estimated_calls"]) == (3300, 765, 1)
    assert c["unknown_price"] == ["llava:13b"] and c["models"]["gpt-4o"]["calls"] == 4
    assert c["models"]["gpt-4o"]["usd"] == pytest.approx(0.0075)
    line = cost_line(events)
    assert "$0.0095" in line and "1 cached (free)" in line and "unknown price: llava:13b" in line
    assert "3,300 in + 640 out" in line and "≈765 input tokens estimated for 1 call" in line
    assert "2 failed (not counted)" in line and "(an estimate)" in line
    assert price_of("GPT-4.1-mini") == (0.40, 1.60) and price_of("my-local-model") is None
    assert cost_line([]) == "cost: no LLM calls"


@pytest.mark.slow
def test_the_cli_commands(runs, tmp_path):
    import typer

    root, _ = runs
    app = typer.Typer()
    app.command("list")(trace_list)
    app.command("export")(trace_export)
    listed = CliRunner().invoke(app, ["list", str(root), "--json"])
    assert listed.exit_code == 0, listed.output
    assert {Path(r["path"]).name for r in json.loads(listed.output)} == {"r1", "z"}
    exported = CliRunner().invoke(app, ["export", str(root / "r1"), "--html", str(tmp_path / "t.html")])
    assert exported.exit_code == 0 and (tmp_path / "t.html").is_file() and "wrote" in exported.output
    assert CliRunner().invoke(app, ["export", str(root / "r1")]).exit_code == 2  # --html is required


def _chromium(page: Path, profile: Path, *args: str) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]  # fmt: skip
    done = subprocess.run(
        [CHROMIUM, *flags, *args, page.as_uri()], capture_output=True, text=True, timeout=120
    )
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install -y chromium)")
def test_the_page_in_headless_chromium(runs, tmp_path):
    root, _ = runs
    page = export_html(root / "r1", tmp_path / "page.html")
    # control: this Chromium does run an inline script, so a title left alone below means it was blocked
    control = tmp_path / "control.html"
    control.write_text("<html><head><title>before</title></head><body><script>document.title='ran'</script>")
    assert "<title>ran</title>" in _chromium(control, tmp_path / "profile", "--dump-dom")

    dom = _chromium(page, tmp_path / "profile", "--dump-dom")
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title and title.group(1) == "alref trace · r1"
    assert "pwned" not in title.group(1)
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', dom)) >= 6
    # and should an escape ever be missed, the page's Content-Security-Policy still blocks the script
    missed = tmp_path / "missed.html"
    missed.write_text(page.read_text(encoding="utf-8").replace("<body>", f"<body>{PAYLOAD}", 1))
    assert "<title>alref trace · r1</title>" in _chromium(missed, tmp_path / "profile", "--dump-dom")

    shot = tmp_path / "page.png"
    _chromium(
        page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,3000", "--hide-scrollbars"
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (3000, 1280) and pixels.var() > 0
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # the red squares of the frames the LLM saw (the page's own styles use no saturated red)
    assert int(((r > 200) & (g < 70) & (b < 70)).sum()) > 2000


def _chat_trace(folder: Path, markers: bool) -> None:
    """Two turns of a chat, each running a selection whose events carry ref 1 (every selection is the
    chat's reference 1); with ``markers`` the selections are framed as the chat writes them now."""
    tracer = Tracer(folder / "trace")
    if markers:
        tracer.event("chat_start", thread="t1", resumed=False, video="/videos/dogs.mp4",
                     input={"path": "/videos/dogs.mp4", "num_frames": 40, "width": 320, "height": 240},
                     settings={"models": "smoke", "llm": "m", "llm_base_url": "http://127.0.0.1:9/v1"})  # fmt: skip
    for turn, (reference, pivot) in enumerate((("the left dog", 3), ("the right dog", 7)), start=1):
        tracer.event("llm_call", step="chat", context={"turn": turn, "step": 1}, model="m", ok=True, answer="",
                     tool_calls=[{"name": "select_referent", "args": {"reference": reference}}])  # fmt: skip
        if markers:
            tracer.event("selection_start", tool="select_referent", reference=reference, object_id=None)
        tracer.event("llm_call", step="choose_box", context={"ref": 1, "clip": 0, "attempt": 1}, model="m",
                     ok=True, answer=f"box 2 for {reference}")  # fmt: skip
        candidates = [
            {"number": 1, "colour": "red", "box": [0, 0, 9, 9]},
            {"number": 2, "colour": "green", "box": [5, 5, 20, 20]},
        ]
        tracer.event("clip_decided", ref=1, clip=0, valid=True, pivot_frame=pivot, pivot_box=[5, 5, 20, 20],
                     box_number=2, decided_by="llm", reason=f"{reference}: box 2")  # fmt: skip
        tracer.event("pivots_decided", summary={"1": {"valid_clips": 1}})
        if markers:
            tracer.event("selection_end", tool="select_referent", reference=reference, status="ok", objects=[turn],
                         clips=[{"clip": 0, "valid": True, "pivot_frame": pivot, "box_number": 2,
                                 "candidates": candidates, "decided_by": "llm"}])  # fmt: skip
        result = json.dumps({"object_id": turn, "name": reference})
        tracer.event(
            "llm_call", step="chat", context={"turn": turn, "step": 2}, model="m", ok=True, answer="Done."
        )
        tracer.event("chat_turn", turn=turn, text=f"segment {reference}", thread="t1", status="ok", answer="Done.",
                     calls=[{"tool": "select_referent", "args": {"reference": reference}, "error": False, "result": result}],
                     objects=[{"object_id": turn, "name": reference, "frames_with_mask": 40, "first_frame": 0,
                               "last_frame": 39}], seconds=1.5 * turn)  # fmt: skip


@pytest.mark.parametrize("markers", [True, False], ids=["now", "older trace"])
def test_a_chats_page_groups_each_selection_under_its_turn(tmp_path, markers):
    _chat_trace(tmp_path / "chat", markers)
    page = export_html(tmp_path / "chat", tmp_path / "chat.html").read_text(encoding="utf-8")
    for wrong in ("video False", "timings False", "“?”", "(None)", "Reference 1"):
        assert wrong not in page
    first, second = (
        page.index("Turn 1: “segment the left dog”"),
        page.index("Turn 2: “segment the right dog”"),
    )
    left = page.index("select_referent “the left dog” → object 1")
    right = page.index("select_referent “the right dog” → object 2")
    assert first < left < page.index("clip 0 → frame 3") < page.index("box 2 for the left dog") < second
    assert second < right < page.index("clip 0 → frame 7") < page.index("box 2 for the right dog")
    assert 'timings</th><td><div class="text">turn 1 1.5 s · turn 2 3.0 s' in page
    if markers:
        assert 'box</th><td><div class="text">2 (green)</div>' in page  # the chosen candidate's colour
        assert "/videos/dogs.mp4 · num_frames 40 · width 320 · height 240" in page
        assert 'model profile</th><td><div class="text">smoke' in page and SMOKE_WORDS in page
    else:
        assert 'box</th><td><div class="text">2</div>' in page  # no colour recorded: no "(None)"


SMOKE_WORDS = "the masks are meaningless"
