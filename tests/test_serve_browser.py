"""`largo serve` in a real browser: headless Chromium (the Debian package, as .ci/run installs it) driven by
Playwright opens the page, picks a class by typing its name, generates with a tiny model, sees the images arrive
and decode, clicks one for its reverse trajectory, and keeps a screenshot. Skips when Chromium or Playwright is
missing."""

import contextlib
import shutil
import threading

import pytest

CHROMIUM = shutil.which("chromium")
pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

from largo.serve.app import create_app  # noqa: E402
from largo.serve.catalog import discover  # noqa: E402
from largo.serve.server import background  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def server(train_tiny):
    run = train_tiny("serve-browser-run")
    app = create_app(discover(None, [str(run)], released=False), "cpu")
    with background(app) as url:
        yield url, run.name
    app.state.jobs.close()


@contextlib.contextmanager
def _page(url: str, width: int, height: int):
    """A headless Chromium page and the list its page errors and off-machine requests are appended to."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            local = (url, f"blob:{url}", "data:")  # the page's own server, or objects the page made (an upload)
            page.on("request", lambda r: r.url.startswith(local) or errors.append(f"left the machine: {r.url}"))
            yield page, errors
        finally:
            browser.close()


def _decoded(page, selector: str) -> list[int]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.complete ? e.naturalWidth : 0)")


def test_pick_a_class_generate_and_open_a_trajectory(server, tmp_path):
    url, model_id = server
    assert threading.current_thread() is threading.main_thread()
    with _page(url, 1100, 760) as (page, errors):
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        assert page.input_value("#model") == model_id
        page.fill("#class-search", "sneak")
        page.wait_for_selector("#class-options li")
        assert page.inner_text("#class-options li.active") == "Sneaker"
        page.press("#class-search", "Enter")
        page.fill("#class-search", "boot")
        page.click("#class-options li >> text=Ankle boot")
        assert page.inner_text("#chips").replace("×", "").split() == ["Sneaker", "Ankle", "boot"]
        page.fill("#per-class", "3")
        page.fill("#steps", "4")
        page.fill("#seed", "7")
        page.click("#generate")
        page.wait_for_function("document.querySelectorAll('#grid figure img').length === 6 && "
                               "/^done/.test(document.querySelector('#status').textContent)", timeout=60_000)
        page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete)")
        assert _decoded(page, "#grid img") == [16] * 6  # every PNG decoded, at the model's 16 px
        captions = page.eval_on_selector_all("#grid figcaption", "els => els.map(e => e.innerText)")
        assert captions[0].startswith("Sneaker\nseed 7") and captions[5].startswith("Ankle boot\nseed 12")
        assert not page.is_hidden("#download")
        page.click("#grid figure:nth-child(4)")
        page.wait_for_function("document.querySelector('#trajectory-img').complete && "
                               "document.querySelector('#trajectory-img').naturalWidth > 0", timeout=60_000)
        assert page.is_visible("#trajectory") and "Ankle boot, seed 10" in page.inner_text("#trajectory-caption")
        assert _decoded(page, "#trajectory-img")[0] > 16 * 5  # a strip of several steps
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=True)
        assert not errors, errors
        assert page.is_hidden("#error")
    assert shot.read_bytes()[:8] == PNG_SIGNATURE and shot.stat().st_size > 10_000


def _data_url_pixels(data_url: str):
    import base64
    import io

    import numpy as np
    from PIL import Image

    return np.array(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("L"))


def test_upload_an_image_draw_a_mask_and_inpaint(server, tmp_path):
    """Editing in the page: a non-image upload is refused with one line; a PNG upload is drawn on the canvas, a
    stroke drawn over it becomes the mask, and the inpainted result arrives with its unmasked pixels exact."""
    import urllib.request

    import numpy as np
    from PIL import Image

    url, model_id = server
    source = tmp_path / "source.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (16, 16), dtype=np.uint8)).save(source)
    junk = tmp_path / "notes.png"
    junk.write_text("not an image")
    with _page(url, 1300, 900) as (page, errors):
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#edit-class option').length === 10")
        page.set_input_files("#edit-file", str(junk))
        page.wait_for_selector("#edit-error:not([hidden])")
        assert "not an image" in page.inner_text("#edit-error")
        page.set_input_files("#edit-file", str(source))
        page.wait_for_function("document.getElementById('edit-error').hidden")
        box = page.locator("#edit-mask").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 40, cy)
        page.mouse.down()
        page.mouse.move(cx + 40, cy, steps=8)
        page.mouse.up()
        page.select_option("#edit-class", "7")
        page.select_option("#edit-method", "ddnm")
        page.fill("#steps", "3")
        sent = _data_url_pixels(page.evaluate("document.getElementById('edit-image').toDataURL('image/png')"))
        mask = _data_url_pixels(page.evaluate("maskPng()")) >= 128
        assert 0 < mask.sum() < mask.size
        page.click("#edit-run")
        page.wait_for_function("!document.getElementById('edit-result').hidden && "
                               "document.getElementById('edit-result-img').complete && "
                               "document.getElementById('edit-result-img').naturalWidth === 16", timeout=60_000)
        assert "Sneaker" in page.inner_text("#edit-caption")
        with urllib.request.urlopen(url + page.get_attribute("#edit-result-img", "src")) as r:
            out = np.array(Image.open(r).convert("L"))
        assert np.array_equal(out[~mask], sent[~mask])  # the pixels outside the stroke come back exactly
        page.screenshot(path=str(tmp_path / "edit.png"), full_page=True)
        assert not errors, errors
