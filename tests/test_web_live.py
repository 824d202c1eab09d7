"""The page as a product, in a real headless browser (#19 parts 2 to 4): a chat turn shows as it happens,
the example button opens the bundled sample in the video player, a legend gives each object's colour, a
second tab is its own session, and without an LLM the "correct masks" tab still makes and corrects
objects with clicks.

`alref app` runs as a subprocess with the click stand-in segmenter (tests/click_segmenter.py). The
scripted LLM (tests/llm_server.py, in this process) holds each of its answers in a turn until the test
releases it (threading events, no waiting on the clock), so the test sees the page *during* the turn:
the person's message, then the tool call, then the answer.
"""

from __future__ import annotations

import threading
from pathlib import Path

import click_segmenter
import pytest
import synth
from app_harness import TIMEOUT_MS, browser_context, chromium, click_standin, explained, serving
from llm_server import Reply, tool_reply
from test_web_app import _last_user_text
from test_web_refine import _click, _go_to_frame

from alref.media.boxes import colour_for

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "shapes.mp4"
N, W, H = 20, 160, 120  # the no-LLM app's video
SN, SW, SH = 60, 320, 240  # the sample (examples/README.md)
STANDIN = ["--models", "smoke", "--segmentation", click_segmenter.NAME]  # the app's tools: the click stand-in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module's apps (Playwright's sync API runs once per thread)."""
    with chromium() as browser:
        yield browser


def _colour(locator) -> str:
    return locator.evaluate("el => getComputedStyle(el).backgroundColor")


def _rgb(obj: int) -> str:
    r, g, b = colour_for(obj - 1)[1]
    return f"rgb({r}, {g}, {b})"


class Gates:
    """The scripted model's answers in a turn, each held until the test opens its gate."""

    def __init__(self) -> None:
        self.asked = {"call": threading.Event(), "answer": threading.Event()}
        self.open = {"call": threading.Event(), "answer": threading.Event()}

    def __call__(self, body: dict) -> Reply:
        red = list(map(float, synth.red_square_box(0, SN, SW, SH)))
        _, answered = _last_user_text(body["messages"])
        step = "answer" if answered else "call"
        self.asked[step].set()
        self.open[step].wait(TIMEOUT_MS / 1000)
        if answered:
            return Reply("Done: the red square is object 1.")
        return tool_reply("c1", "segment_box", {"frame": 0, "box": red, "name": "red square"})

    def release(self) -> None:
        for gate in self.open.values():
            gate.set()


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, browser):
    tmp = tmp_path_factory.mktemp("live")
    gates = Gates()
    with serving(tmp, STANDIN, {"OPENAI_API_KEY": "sk-test", **click_standin(tmp)}, llm=gates) as app:
        try:
            yield {**app, "gates": gates, "browser": browser}
        finally:
            gates.release()  # before the scripted server stops


def test_a_turn_shows_as_it_happens_with_the_sample_and_its_legend(live_app):
    explained(_drive_live, live_app)


def _drive_live(app) -> None:
    from playwright.sync_api import expect

    gates: Gates = app["gates"]
    context = browser_context(app)
    page = context.new_page()
    page.goto(app["url"])
    example = page.locator("#alref-example")
    expect(example).to_be_visible()
    example.click()
    expect(page.locator("#alref-status")).to_contain_text(f"shapes.mp4: {SN} frames, {SW}×{SH}")
    expect(page.locator("#alref-path textarea")).to_have_value(str(SAMPLE))
    player = page.locator("#alref-player video")
    expect(player).to_have_count(1)
    expect(player).to_have_attribute("src", _served("shapes.mp4"))
    assert page.request.get(player.get_attribute("src")).body() == SAMPLE.read_bytes()

    other = context.new_page()  # a second tab, open while the first one's turn runs
    other.goto(app["url"])
    expect(other.locator("#alref-example")).to_be_visible()

    chat = page.locator("#alref-chat")
    message = page.locator("#alref-message textarea")
    message.fill("segment the red square")
    message.press("Enter")
    assert gates.asked["call"].wait(TIMEOUT_MS / 1000)  # the model is asked, and holds its answer
    expect(chat).to_contain_text("segment the red square")  # the message is on the page at once
    expect(chat).to_contain_text("working")
    expect(message).to_have_value("")
    gates.open["call"].set()
    assert gates.asked["answer"].wait(TIMEOUT_MS / 1000)  # the tool ran; the model holds its answer
    expect(chat).to_contain_text("segment_box(frame=0, box=[")
    expect(chat).to_contain_text('name="red square") done')
    assert "Done: the red square" not in chat.inner_text()
    assert "segment the red square" not in other.locator("#alref-chat").inner_text()
    gates.open["answer"].set()
    expect(chat).to_contain_text("Done: the red square is object 1.")
    expect(chat).to_contain_text("(tools: segment_box ✓)")  # the history as every turn leaves it
    expect(chat).not_to_contain_text("working")
    expect(page.locator("#alref-objects")).to_contain_text("red square")

    legend = page.locator("#alref-legend li")
    expect(legend).to_have_count(1)
    expect(legend.first).to_have_text("1 red square")
    assert _colour(legend.first.locator(".alref-swatch")) == _rgb(1)
    page.get_by_role("tab", name="correct masks").click()
    item = page.locator("#alref-viewer-info li").first
    expect(item).to_contain_text("object 1 “red square” (red)")
    assert _colour(item.locator(".alref-swatch")) == _rgb(1)

    expect(other.locator("#alref-thread")).to_contain_text("no conversation yet")  # unaffected
    assert other.locator("#alref-chat").inner_text().count("red square") == 0
    expect(other.locator("#alref-legend li")).to_have_count(0)
    context.close()


def _served(name: str):
    import re

    return re.compile(rf"/gradio_api/file=.*{re.escape(name)}$")


# --- no LLM: the viewer on the tab's own session ------------------------------------------------------


@pytest.fixture(scope="module")
def clicks_app(tmp_path_factory, browser):
    tmp = tmp_path_factory.mktemp("clicks")
    video = synth.write_shapes_video(tmp / "clip.mp4", num_frames=N, width=W, height=H, fps=10)
    with serving(tmp, [video.name, *STANDIN], click_standin(tmp)) as app:
        yield {**app, "browser": browser}


def test_the_viewer_works_without_an_llm(clicks_app):
    explained(_drive_clicks, clicks_app)


def _drive_clicks(app) -> None:
    from playwright.sync_api import expect

    context = browser_context(app)
    page = context.new_page()
    page.goto(app["url"])
    expect(page.locator("#alref-status")).to_contain_text(f"clip.mp4: {N} frames")
    expect(page.locator("#alref-status")).to_contain_text("makes and corrects objects with your clicks")
    expect(page.locator("#alref-player video")).to_have_count(1)
    page.get_by_role("tab", name="correct masks").click()
    info = page.locator("#alref-viewer-info")
    expect(info).to_contain_text("no objects yet")
    _go_to_frame(page, 0)
    page.locator("#alref-viewer-mode").get_by_text("box (two clicks)").click()
    x0, y0, x1, y1 = synth.red_square_box(0, N, W, H)
    _click(page, x0, y0)
    expect(page.locator("#alref-viewer-pending")).to_contain_text("now click its second corner")
    _click(page, x1 - 1, y1 - 1)
    expect(page.locator("#alref-viewer-pending")).to_contain_text("a box (")
    page.locator("#alref-viewer-name textarea").fill("red square")
    page.locator("#alref-viewer-apply").click()
    expect(page.locator("#alref-viewer-status")).to_contain_text("object 1:")
    expect(info).to_contain_text("object 1 “red square” (red):")
    assert _colour(info.locator("li .alref-swatch").first) == _rgb(1)
    objects = page.locator("#alref-objects")
    expect(objects.locator("tr").nth(1)).to_have_text("1red square302")  # frames 0-2

    _go_to_frame(page, 12)
    expect(info).to_contain_text("object 1 “red square” (red): no mask on this frame")
    page.locator("#alref-viewer-mode").get_by_text("positive point").click()
    sx0, sy0, sx1, sy1 = synth.red_square_box(12, N, W, H)
    _click(page, (sx0 + sx1) // 2, (sy0 + sy1) // 2)
    page.locator("#alref-viewer-apply").click()
    expect(info).to_contain_text("1 correction here")
    expect(objects.locator("tr").nth(1)).to_have_text("1red square8014")  # frames 0-2 and 10-14
    page.locator("#alref-viewer-undo").click()
    expect(info).to_contain_text("object 1 “red square” (red): no mask on this frame")
    expect(objects.locator("tr").nth(1)).to_have_text("1red square302")

    page.get_by_role("tab", name="chat").click()
    expect(page.locator("#alref-overlay video")).to_have_count(1)
    expect(page.locator("#alref-legend li")).to_have_text(["1 red square"])
    expect(page.locator("#alref-chat")).to_contain_text("Undid the last change")
    message = page.locator("#alref-message textarea")
    message.fill("hello")
    message.press("Enter")
    expect(page.locator("#alref-turn")).to_contain_text("error: the chat needs a tool-calling LLM")
    expect(message).to_have_value("hello")  # not sent: it stays in the box
    context.close()
