"""`alref app` in a real headless browser: the app runs as a subprocess (smoke models, the LLM pointed
at the scripted OpenAI-compatible server) and Playwright drives the system Chromium.

One conversation: upload the sample video, "segment the red square" → a preview and the object, the
trace of the turn, downloads (result.json read back), undo → the object is gone; an LLM answer holding
a ``<script>`` is shown as text and never runs; a one-shot segment run; a second tab is its own
session: a non-video upload gets a clear message there, and it resumes the first tab's conversation by
its thread id. No API key reaches the page, its config, a download or any file the app wrote.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import synth
from agent_script import Script
from app_harness import browser_context, explained, running_app
from llm_server import Reply, tool_reply

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-alref-test-SECRET-0123456789"
XSS = (
    '<script>window.alrefPwned = 1; alert(1)</script> **not bold** <img src=x onerror="window.alrefPwned=2">'
)
N, W, H = 20, 160, 120

pytestmark = pytest.mark.slow


def _last_user_text(messages: list[dict]) -> tuple[str, bool]:
    """The last typed message, and whether a tool has answered since."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m["role"] == "user" and isinstance(m["content"], str):
            return m["content"], any(n["role"] == "tool" for n in messages[i + 1 :])
    return "", False


def llm(red: list[float]):
    script = Script(choose_box=json.dumps({"reasoning": "box 1 <b>is</b> the square", "box": 1}))

    def answer(body: dict) -> Reply:
        if not body.get("tools"):  # the segment form's GPT-PS steps
            return Reply(script(body["messages"]))
        text, answered = _last_user_text(body["messages"])
        if answered:
            return Reply("Done: the red square is object 1.")
        if "red square" in text:
            return tool_reply("c1", "segment_box", {"frame": 0, "box": red, "name": "red square"})
        if "script" in text:
            return Reply(XSS)
        return Reply("Hello.")

    return answer


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    video = synth.write_shapes_video(tmp / "shapes.mp4", num_frames=N, width=W, height=H, fps=10)
    red = list(map(float, synth.red_square_box(0, N, W, H)))
    with running_app(tmp, [video.name, "--models", "smoke"], {"OPENAI_API_KEY": KEY}, llm=llm(red)) as app:
        yield {**app, "tmp": tmp, "video": video}


def test_the_browser_app(app):
    explained(_drive, app)


def _drive(app) -> None:
    from playwright.sync_api import expect

    tmp: Path = app["tmp"]
    context = browser_context(app, height=1000, accept_downloads=True)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(app["url"])
    status = page.locator("#alref-status")
    expect(status).to_contain_text(f"{N} frames")  # the command line's video is opened at load
    first = page.locator("#alref-thread-id").inner_text()
    page.locator("#alref-upload input[type=file]").set_input_files(str(app["video"]))
    expect(page.locator("#alref-upload")).to_contain_text("shapes.mp4")
    page.locator("#alref-open").click()  # the upload wins over the path: a new conversation about it
    expect(page.locator("#alref-thread-id")).not_to_have_text(first)
    expect(status).to_contain_text(f"shapes.mp4: {N} frames, {W}×{H}")
    thread = page.locator("#alref-thread-id").inner_text()

    message = page.locator("#alref-message textarea")
    message.fill("segment the red square")
    message.press("Enter")
    expect(page.locator("#alref-objects")).to_contain_text("red square")
    expect(page.locator("#alref-preview img")).to_be_visible()
    expect(page.locator("#alref-overlay video")).to_have_count(1)
    expect(page.locator("#alref-chat")).to_contain_text("Done: the red square is object 1.")
    trace = page.locator("#alref-trace")
    expect(trace).to_contain_text("LLM call")
    expect(trace).to_contain_text("segment_box")
    shot = tmp / "app.png"
    page.screenshot(path=str(shot))
    _keep_screenshot(shot)

    page.locator("#alref-downloads").click()
    link = page.locator("#alref-files tr", has=page.locator("td[aria-label='result.json']")).locator("a")
    expect(link).to_be_visible()
    with page.expect_download() as caught:
        link.click()
    result = json.loads(Path(caught.value.path()).read_text())
    assert result["thread"] == thread and result["smoke"] is True
    assert [(o["object_id"], o["name"]) for o in result["objects"]] == [(1, "red square")]
    assert result["objects"][0]["frames_with_mask"] > 0 and result["input"]["num_frames"] == N
    for name in ("masks.zip", "overlay.mp4"):
        expect(page.locator(f"#alref-files td[aria-label='{name}']")).to_have_count(1)

    page.locator("#alref-undo").click()
    expect(page.locator("#alref-no-objects")).to_be_visible()
    expect(page.locator("#alref-chat")).to_contain_text("Undid the last change; there are no objects.")
    assert "{'objects'" not in page.locator("#alref-chat").inner_text()  # a sentence, not a dict
    expect(page.locator("#alref-preview img")).to_have_count(0)

    message.fill("show me a script")
    message.press("Enter")
    chat = page.locator("#alref-chat")
    expect(chat).to_contain_text("<script>window.alrefPwned = 1; alert(1)</script> **not bold**")
    expect(chat).to_contain_text('<img src=x onerror="window.alrefPwned=2">')
    assert page.evaluate("window.alrefPwned") is None and dialogs == []
    assert chat.locator("script, img[src=x], strong").count() == 0

    page.get_by_role("tab", name="segment").click()
    page.locator("#alref-reference textarea").fill("the red square")
    page.locator("#alref-segment").click()
    expect(page.locator("#alref-result")).to_contain_text("the red square")
    expect(page.locator("#alref-result")).to_contain_text(
        "box 1 <b>is</b> the square"
    )  # the LLM's reason, as text
    for name in ("masks.zip", "overlay.mp4", "result.json"):
        expect(page.locator(f"#alref-run-files td[aria-label='{name}']")).to_have_count(1)
    expect(page.locator("#alref-timings")).to_contain_text("propagation")  # the stages it went through

    other = context.new_page()  # a second tab: its own session
    other.goto(app["url"])
    expect(other.locator("#alref-status")).to_contain_text(f"{N} frames")
    expect(other.locator("#alref-thread-id")).not_to_have_text(thread)
    (tmp / "notes.mp4").write_text("not a video at all")
    other.locator("#alref-upload input[type=file]").set_input_files(str(tmp / "notes.mp4"))
    other.locator("#alref-open").click()
    expect(other.locator("#alref-status")).to_contain_text("error: not a video: ")
    other.get_by_text("saved conversations").click()
    other.locator("#alref-resume-thread textarea").fill(thread)
    other.locator("#alref-resume").click()
    expect(other.locator("#alref-thread-id")).to_have_text(thread)
    expect(other.locator("#alref-chat")).to_contain_text("segment the red square")
    expect(other.locator("#alref-no-objects")).to_be_visible()  # the undo was saved in the thread
    expect(page.locator("#alref-thread-id")).to_have_text(thread)  # the first tab is unchanged

    for shown in (page, other):
        assert KEY not in shown.content()
    config = page.request.get(app["url"].rstrip("/") + "/config")
    assert config.ok and KEY not in config.text()
    assert app["server"].chat_requests[-1]["_headers"]["authorization"] == f"Bearer {KEY}"  # it was in use
    leaked = [p for p in tmp.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []
    context.close()


def _keep_screenshot(shot: Path) -> None:
    """The README's screenshot: written to docs/app.png with ALREF_UPDATE_SCREENSHOT=1 (palette PNG, small)."""
    from PIL import Image

    if os.environ.get("ALREF_UPDATE_SCREENSHOT") != "1":
        return
    target = ROOT / "docs" / "app.png"
    target.parent.mkdir(exist_ok=True)
    with Image.open(shot) as image:
        image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    assert target.stat().st_size < 150_000, target.stat().st_size
    shutil.copystat(shot, target)
