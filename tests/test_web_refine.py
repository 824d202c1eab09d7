"""The app's mask viewer in a real headless browser: correcting an object with clicks.

`alref app` runs as a subprocess with a stand-in segmentation tool (tests/click_segmenter.py, selected
with ``--segmentation click-standin`` through its entry point): a box's mask is the box, a click's is a
disc around it, and a prompt reaches 2 frames either side, so an object is missing far from its
prompts and a click there makes it appear where the test can see it. The scripted LLM segments the
red square on frame 0 (frames 0-2); on frame 12 the viewer says it is missing; a positive click on
the square and "apply" give it a mask there (the frame's pixels tinted in the object's colour), the
objects table and the overlay change; "undo" restores the masks. A second tab is its own session: its
new object (with a name holding markup, shown as text) never reaches the first tab.
"""

from __future__ import annotations

import io

import click_segmenter
import pytest
import synth
from app_harness import browser_context, click_standin, explained, running_app
from test_web_app import llm

from alref.app.viewer import BOX, NEGATIVE, POSITIVE, Clicks, display_scale, frame_html, frame_image, to_video
from alref.media.boxes import colour_for

N, W, H = 20, 160, 120


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refine")
    video = synth.write_shapes_video(tmp / "shapes.mp4", num_frames=N, width=W, height=H, fps=10)
    red = list(map(float, synth.red_square_box(0, N, W, H)))
    args = [video.name, "--models", "smoke", "--segmentation", click_segmenter.NAME]
    with running_app(tmp, args, {"OPENAI_API_KEY": "sk-test", **click_standin(tmp)}, llm=llm(red)) as app:
        yield app


@pytest.mark.slow
def test_correcting_a_mask_with_a_click(app):
    explained(_drive, app)


def _go_to_frame(page, frame: int) -> None:
    box = page.locator("#alref-viewer-frame input[type=number]")
    box.fill(str(frame))
    box.press("Enter")
    from playwright.sync_api import expect

    expect(page.locator("#alref-viewer-frame-no")).to_contain_text(f"frame {frame} of")


def _click(page, x: float, y: float) -> None:
    """A click on video pixel (x, y) of the shown frame (scaled by display_scale, fitted by the page)."""
    scale = display_scale(W)
    image = page.locator("#alref-viewer-image img")
    at = image.evaluate(
        """(img, [nx, ny]) => {
            const r = img.getBoundingClientRect();
            const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, 1);
            return [r.left + (r.width - img.naturalWidth * s) / 2 + nx * s,
                    r.top + (r.height - img.naturalHeight * s) / 2 + ny * s];
        }""",
        [x * scale + scale / 2, y * scale + scale / 2],
    )
    page.mouse.click(at[0], at[1])


def _pixel(page, x: float, y: float) -> tuple[int, int, int]:
    """The shown frame's colour at video pixel (x, y), read from the image the page shows."""
    from PIL import Image

    scale = display_scale(W)
    src = page.locator("#alref-viewer-image img").get_attribute("src")
    body = page.request.get(src).body()
    with Image.open(io.BytesIO(body)) as image:
        return image.convert("RGB").getpixel((int(x * scale), int(y * scale)))


def _drive(app) -> None:
    from playwright.sync_api import expect

    context = browser_context(app)
    page = context.new_page()
    page.goto(app["url"])
    expect(page.locator("#alref-status")).to_contain_text(f"{N} frames")
    message = page.locator("#alref-message textarea")
    message.fill("segment the red square")
    message.press("Enter")
    objects = page.locator("#alref-objects")
    expect(objects).to_contain_text("red square")
    expect(objects.locator("tr").nth(1)).to_have_text("1red square302")  # frames 0-2
    overlay = page.locator("#alref-overlay video")
    expect(overlay).to_have_count(1)
    overlay_before = overlay.get_attribute("src")

    page.get_by_role("tab", name="correct masks").click()
    info = page.locator("#alref-viewer-info")
    expect(info).to_contain_text("object 1 “red square” (red):")
    expect(page.locator("#alref-viewer-object input")).to_have_value("1 red square")
    _go_to_frame(page, 12)
    expect(info).to_contain_text("object 1 “red square” (red): no mask on this frame")
    x0, y0, x1, y1 = synth.red_square_box(12, N, W, H)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    before = _pixel(page, cx, cy)
    _click(page, cx, cy)
    expect(page.locator("#alref-viewer-pending")).to_contain_text("pending prompt: 1 positive point")
    page.locator("#alref-viewer-clear").click()  # pending clicks can be dropped
    expect(page.locator("#alref-viewer-pending")).to_contain_text("pending prompt: nothing yet")
    _click(page, cx, cy)
    expect(page.locator("#alref-viewer-pending")).to_contain_text("pending prompt: 1 positive point")

    page.locator("#alref-viewer-apply").click()
    expect(page.locator("#alref-viewer-status")).to_contain_text("object 1:")
    expect(info).to_contain_text("1 correction here")
    expect(page.locator("#alref-viewer-pending")).to_contain_text("nothing yet")
    pixels = int(page.locator("#alref-viewer-status").inner_text().split(":")[1].split("px")[0])
    assert pixels > 60  # the stand-in's disc of radius 6
    after = _pixel(page, cx, cy)
    red = colour_for(0)[1]
    tinted = tuple(int(v * 0.5 + c * 0.5 + 0.5) for v, c in zip(before, red, strict=True))
    assert all(abs(a - t) <= 12 for a, t in zip(after, tinted, strict=True)), (before, after, tinted)
    expect(objects.locator("tr").nth(1)).to_have_text("1red square8014")  # frames 0-2 and 10-14
    page.get_by_role("tab", name="chat").click()
    expect(page.locator("#alref-overlay video")).not_to_have_attribute("src", overlay_before)
    expect(page.locator("#alref-chat")).to_contain_text("Corrected object 1 on frame 12")

    page.get_by_role("tab", name="correct masks").click()
    expect(page.locator("#alref-viewer-frame-no")).to_contain_text("frame 12 of")
    page.locator("#alref-viewer-undo").click()
    expect(info).to_contain_text("object 1 “red square” (red): no mask on this frame")
    expect(objects.locator("tr").nth(1)).to_have_text("1red square302")
    restored = _pixel(page, cx, cy)
    assert all(abs(a - b) <= 12 for a, b in zip(restored, before, strict=True)), (before, restored)

    other = context.new_page()  # a second tab: its own conversation, objects and clicks
    other.goto(app["url"])
    expect(other.locator("#alref-status")).to_contain_text(f"{N} frames")
    other.get_by_role("tab", name="correct masks").click()
    other_info = other.locator("#alref-viewer-info")
    expect(other_info).to_contain_text("no objects yet")
    expect(other.locator("#alref-viewer-object input")).to_have_value("a new object")
    _go_to_frame(other, 5)
    other.locator("#alref-viewer-name textarea").fill("<b>ball</b>")
    _click(other, 30, 30)
    other.locator("#alref-viewer-mode").get_by_text("negative point").click()
    _click(other, 33, 30)
    expect(other.locator("#alref-viewer-pending")).to_contain_text("1 positive point and 1 negative point")
    other.locator("#alref-viewer-apply").click()
    expect(other_info).to_contain_text("object 1 “<b>ball</b>” (red):")
    assert other_info.locator("b").count() == 0  # the name is text, not markup
    expect(other.locator("#alref-objects")).to_contain_text("<b>ball</b>")

    page.get_by_role("tab", name="chat").click()
    page.get_by_role("tab", name="correct masks").click()  # shown again: the first tab's objects only
    expect(info).to_contain_text("object 1 “red square” (red)")
    assert "ball" not in info.inner_text() and "ball" not in objects.inner_text()
    context.close()


# --- the viewer's parts without a browser ------------------------------------------------------------


def test_clicks_make_points_and_a_box_from_two_corners():
    clicks = Clicks(frame=3)
    assert clicks.empty and clicks.describe() == "nothing yet"
    clicks.add(POSITIVE, 10, 20)
    clicks.add(NEGATIVE, 30, 40)
    clicks.add(BOX, 90, 80)  # the first corner: no box yet
    assert clicks.box is None and clicks.describe().endswith("box: now click its second corner")
    clicks.add(BOX, 50, 100)  # any two opposite corners
    assert (clicks.points, clicks.labels, clicks.box, clicks.corner) == (
        [[10, 20], [30, 40]],
        [1, 0],
        [50, 80, 90, 100],
        None,
    )
    assert clicks.describe() == "1 positive point, 1 negative point and a box (50, 80, 90, 100)"


def test_a_click_on_the_shown_image_is_a_video_pixel():
    assert display_scale(160) == 4.0 and display_scale(640) == 1.0 and display_scale(2560) == 0.5
    assert to_video([241, 82], 4.0, 160, 120) == (60.2, 20.5)
    assert to_video([5000, -3], 0.5, 2560, 1440) == (2560.0, 0.0)  # kept inside the frame


class _Video:
    def read_frame(self, index):
        import numpy as np

        return np.full((H, W, 3), 40, np.uint8)


class _Session:
    """What the viewer reads of a ChatSession: video, info, objects and masks (RLE)."""

    def __init__(self):
        import numpy as np

        from alref.media.writers import mask_to_rle

        self.video = _Video()
        self.info = type("Info", (), {"num_frames": N, "width": W, "height": H})()
        mask = np.zeros((H, W), bool)
        mask[10:20, 10:30] = True
        self.objects = {1: {"name": '<img src=x onerror="alert(1)">', "prompts": [[4, [10, 10, 30, 20]]],
                            "refinements": [{"frame": 4, "points": [[5, 5]], "labels": [1], "box": None}]},
                        2: {"name": "b", "prompts": [[0, [0, 0, 5, 5]]]}}  # fmt: skip
        self.masks = {1: {4: mask_to_rle(mask)}, 2: {4: mask_to_rle(np.zeros((H, W), bool))}}


def test_the_frame_is_shown_with_masks_and_pending_clicks_and_its_text_escaped():
    session = _Session()
    clicks = Clicks(frame=4)
    clicks.add(POSITIVE, 100, 100)
    image = frame_image(session, 4, clicks)
    assert image.shape == (H * 4, W * 4, 3)
    red = colour_for(0)[1]
    assert tuple(image[15 * 4 + 2, 20 * 4 + 2]) == tuple(int(40 * 0.5 + c * 0.5 + 0.5) for c in red)  # tinted
    assert tuple(image[100 * 4, 100 * 4]) == (255, 255, 255)  # the pending click's white mark
    assert tuple(frame_image(session, 4, None)[100 * 4, 100 * 4]) == (40, 40, 40)
    html = frame_html(session, 4, clicks)
    assert "<img" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "(red): 200 px, 1 box prompt here, 1 correction here" in html
    assert "object 2 “b” (green): no mask on this frame" in html
    assert "pending prompt: 1 positive point" in html
    assert "pending prompt: nothing yet" in frame_html(session, 5, clicks)  # clicks belong to their frame
