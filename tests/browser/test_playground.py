"""The playground in a real browser (headless Chromium) against a real `pico serve` on the tiny models.

Every wait is on something the page shows (an event it received, an element it added), never a
timer. A long job is held open with the hold fault (``site.held()``) and moved on step by step
(``hold.to_step``), so nothing depends on how fast this machine runs a step.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.browser.conftest import LAPTOP, PHONE
from tests.live import Background
from tests.server.conftest import API_KEY

pytestmark = pytest.mark.browser

HELD_STEPS = 50  # any count above the step a test moves a held job to; the page previews every 2nd step


def image_of(src: str) -> Image.Image:
    """The image in a data: URL."""
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()
    return image


def red_png(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(path)
    return path


def test_the_page_is_served_at_the_root_and_at_playground_with_its_files(site):
    for path in ("/", "/playground"):
        reply = site.get(path)
        assert reply.status == 200 and reply.header("content-type") == "text/html; charset=utf-8"
        assert b'<script src="/playground/app.js">' in reply.body and b"://" not in reply.body  # nothing from afar
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        reply = site.get(f"/playground/{name}")
        assert reply.header("content-type").startswith(kind) and b"://" not in reply.body
    assert site.get("/playground/secrets.py").status == 404


def test_generate_shows_the_image_in_the_gallery_with_its_seed_and_again_with_that_seed_repeats_it(page, site):
    page.fill("#prompt", "a ginger cat")
    page.fill("#steps", "4")
    page.fill("#seed", "1234")
    assert not page.is_checked("#seed-random")
    page.click("#generate")
    page.wait_for_selector(".card")
    assert page.inner_text(".card .seed") == "Seed 1234"
    assert page.get_attribute("#run-status", "data-state") == "done"
    assert page.evaluate("document.getElementById('progress').value") == 4
    assert "a ginger cat" in page.inner_text(".card .prompt")
    first = page.get_attribute(".card img", "src")
    assert image_of(first).size == (64, 64)

    page.fill("#prompt", "something else")
    page.fill("#seed", "")
    page.click(".card .again")  # that image's settings and seed, and generate
    page.wait_for_function("document.querySelectorAll('.card').length === 2")
    assert page.input_value("#prompt") == "a ginger cat"
    cards = page.query_selector_all(".card")
    assert [c.query_selector(".seed").inner_text() for c in cards] == ["Seed 1234", "Seed 1234"]
    assert image_of(cards[0].query_selector("img").get_attribute("src")).tobytes() == image_of(first).tobytes()
    # The gallery lasts for the browser session: a reload shows it again.
    page.reload()
    page.wait_for_selector("body[data-ready]")
    assert len(page.query_selector_all(".card")) == 2


def test_a_long_job_shows_its_progress_moving_and_cancel_stops_it(page, site):
    page.fill("#prompt", "hold")
    page.fill("#steps", str(HELD_STEPS))
    with site.held() as hold:
        with page.expect_response("**/api/v1/stable-diffusion*") as answer:
            page.click("#generate")
        job_id = answer.value.headers["x-pico-job"]
        page.wait_for_function("document.getElementById('progress').value === 1")  # held at its first step
        assert page.query_selector('#previews[data-kind="preview"] img') is None  # previews every 2nd step
        hold.to_step(4)
        page.wait_for_function("document.getElementById('progress').value === 4")  # it moves
        assert page.inner_text("#run-status").startswith(f"Step 4 of {HELD_STEPS}")
        page.wait_for_selector('#previews[data-kind="preview"] img')  # a preview of the image forming
        with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
            page.click("#cancel")
        assert deleted.value.ok
        hold.release()  # the cancelled job stops at its next step
        page.wait_for_selector('#run-status[data-state="cancelled"]')
    assert page.inner_text("#run-status") == "Cancelled."
    job = site.get(f"/api/v1/jobs/{job_id}").json
    assert (job["State"], job["Step"]) == ("cancelled", 5), job  # held at step 4, stopped at the next
    assert page.query_selector(".card") is None
    assert page.is_hidden("#cancel") and page.is_enabled("#generate")


def test_inpainting_sends_the_painted_mask_and_shows_the_result(page, site, tmp_path):
    page.check('input[name="task"][value="inpaint"]', force=True)
    assert page.input_value("#model") == "runwayml/stable-diffusion-inpainting"
    assert page.is_hidden("#strength") is False and page.is_visible("#brush")
    page.set_input_files("#image-file", str(red_png(tmp_path)))
    page.wait_for_selector("#canvas-box:not([hidden])")
    box = page.locator("#mask-canvas").bounding_box()
    x = box["x"] + box["width"] * 0.75  # a stroke down the right quarter
    page.mouse.move(x, box["y"] + 5)
    page.mouse.down()
    page.mouse.move(x, box["y"] + box["height"] - 5, steps=8)
    page.mouse.up()
    page.fill("#prompt", "a hat")
    page.fill("#steps", "4")
    with page.expect_request("**/api/v1/stable-diffusion-inpaint*") as sent:
        page.click("#generate")
    body = json.loads(sent.value.post_data)
    assert image_of(body["ImageBase64"]).size == (64, 64)
    mask = image_of(body["MaskImageBase64"]).convert("L")
    assert mask.size == (64, 64)
    assert mask.getpixel((48, 32)) == 255  # painted
    assert mask.crop((0, 0, 40, 64)).getextrema() == (0, 0)  # the rest is kept
    page.wait_for_selector(".card")
    assert "stable-diffusion-inpainting" in page.inner_text(".card .details")


def test_the_servers_message_shows_next_to_the_field_it_names(page):
    page.fill("#prompt", "a cat")
    page.fill("#steps", "999")
    page.click("#generate")
    page.wait_for_selector('.field[data-field="Steps"].invalid')
    assert page.inner_text('.field[data-field="Steps"] output.error') == "Steps must be between 1 and 250, got 999"
    assert page.get_attribute("#run-status", "data-state") == "failed"
    page.fill("#steps", "4")  # editing the field clears its message
    assert page.inner_text('.field[data-field="Steps"] output.error') == ""

    page.check('input[name="task"][value="image-to-image"]', force=True)
    page.click("#generate")  # no image given
    page.wait_for_selector('.field[data-field="ImageBase64"].invalid')
    assert "ImageBase64 is required" in page.inner_text('.field[data-field="ImageBase64"] output.error')


def test_variation_takes_a_dropped_image_and_needs_no_prompt(page, tmp_path):
    page.check('input[name="task"][value="variation"]', force=True)
    assert page.is_hidden("#prompt")
    data = base64.b64encode(red_png(tmp_path).read_bytes()).decode()
    page.evaluate("""async (b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "red.png", { type: "image/png" }));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
    }""", data)
    page.wait_for_selector("#canvas-box:not([hidden])")
    page.fill("#steps", "3")
    page.click("#generate")
    page.wait_for_selector(".card")
    assert page.inner_text(".card .prompt") == "Variation"


def test_it_reads_well_on_a_phone(browser, site):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{site.port}/")
    page.wait_for_selector("body[data-ready]")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing wider than the screen
    box = page.locator("#generate").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] and box["height"] >= 36  # a thumb-sized button
    context.close()


def test_behind_an_api_key_the_page_asks_once_and_keeps_it(browser, serve):
    keyed = serve("--api-key", API_KEY)  # the server tests' keyed server, when they run too
    context = browser.new_context(viewport=LAPTOP)
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{keyed.port}/")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#key-input", API_KEY)
        page.click("#key-save")
        page.wait_for_selector("body[data-ready]")
        page.fill("#prompt", "a cat")
        page.fill("#steps", "2")
        page.click("#generate")
        page.wait_for_selector(".card")
        page.reload()
        page.wait_for_selector("body[data-ready]")
        assert page.query_selector("#key-dialog[open]") is None
    finally:
        context.close()


@pytest.mark.skipif(not os.environ.get("PICO_SCREENSHOT"), reason="set PICO_SCREENSHOT=path to write the README's")
def test_screenshot_for_the_readme(page, site):
    """Two images in the gallery and a third forming: its progress, rate and preview, with Cancel."""
    page.fill("#prompt", "a lighthouse on a cliff at dusk, oil painting")
    page.fill("#negative", "blurry")
    page.fill("#steps", "20")
    for seed, cards in (("42", 1), ("43", 2)):
        page.fill("#seed", seed)
        page.click("#generate")
        page.wait_for_function(f"document.querySelectorAll('.card').length === {cards}")
    page.fill("#seed", "44")
    page.fill("#steps", "100")  # a preview every 4th step
    with site.held() as hold:
        page.click("#generate")
        page.wait_for_function("document.getElementById('progress').value === 1")
        hold.to_step(40)
        page.wait_for_function("document.getElementById('progress').value === 40")
        page.wait_for_selector('#previews[data-kind="preview"] img')
        page.screenshot(path=os.environ["PICO_SCREENSHOT"], full_page=False)
        page.click("#cancel")
        hold.release()
        page.wait_for_selector('#run-status[data-state="cancelled"]')


def test_a_waiting_job_shows_its_place_in_the_queue_then_runs(page, site):
    with site.held() as hold:
        first = Background(site.post, "/api/v1/stable-diffusion", {"Phrase": "ahead", "Steps": 2, "Width": 64,
                                                                    "Height": 64})
        site.wait_for_jobs("running")
        page.fill("#prompt", "a ginger cat")
        page.fill("#steps", "2")
        page.click("#generate")
        page.wait_for_selector('#run-status[data-state="queued"]')
        assert page.inner_text("#run-status") == "Waiting: 1st in the queue."
        hold.release()
        page.wait_for_selector(".card")
    assert first.result().status == 200
    assert page.get_attribute("#run-status", "data-state") == "done"


def test_a_card_downloads_its_image_and_gives_back_its_settings(page, site):
    page.fill("#prompt", "a ginger cat")
    page.fill("#negative", "blurry")
    page.fill("#steps", "3")
    page.fill("#seed", "77")
    lora = page.query_selector("#loras .lora")  # the demo LoRAs are offered on SD 1.5
    assert lora is not None and page.is_visible("#loras-field")
    lora_name = lora.get_attribute("data-name")
    lora.query_selector('input[type="checkbox"]').check()
    lora.query_selector('input[type="number"]').fill("0.5")
    page.click("#generate")
    page.wait_for_selector(".card")
    meta = json.loads(page.get_attribute(".card", "title"))
    assert [(item["Name"], item["Weight"]) for item in meta["Loras"]] == [(lora_name, 0.5)]
    link = page.query_selector(".card .download")
    assert link.get_attribute("download") == "pico-77.png"
    assert link.get_attribute("href") == page.get_attribute(".card img", "src")
    with page.expect_download() as saved:
        link.click()
    assert image_of("data:," + base64.b64encode(Path(saved.value.path()).read_bytes()).decode()).size == (64, 64)

    page.fill("#prompt", "something else")
    page.fill("#negative", "")
    page.fill("#steps", "9")
    page.click(".card .use")  # the settings back, not the seed, and nothing generated
    assert (page.input_value("#prompt"), page.input_value("#negative"), page.input_value("#steps")) == (
        "a ginger cat", "blurry", "3")
    assert len(page.query_selector_all(".card")) == 1
