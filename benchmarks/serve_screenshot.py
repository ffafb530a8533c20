"""The README's screenshot of `largo serve` (docs/serve.png), reproducibly: serve the released checkpoints on a
free local port, drive the page with Playwright in headless Chromium, generate 4 classes x 4 images of
fashion_mnist-32-cpu with its default sampler, open one image's reverse trajectory, save the page.

    python benchmarks/serve_screenshot.py [--out docs/serve.png] [--model fashion_mnist-32-cpu]
    # the editing panel (docs/serve_edit.png): test image #0, a stroke across its middle, inpainted by RePaint
    python benchmarks/serve_screenshot.py --edit --model fashion_mnist-28-cpu --out docs/serve_edit.png
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from largo.serve.app import create_app
from largo.serve.catalog import discover
from largo.serve.server import background

CLASSES = ("T-shirt", "Trouser", "Sneaker", "Bag")


def save_screenshot(page, out: Path) -> None:
    page.wait_for_timeout(300)
    shot = page.screenshot(full_page=True)
    image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(256)  # a palette PNG: a third of the bytes
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB, {image.width}x{image.height})")


def drive(url: str, model: str, out: Path, chromium: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1180, "height": 800})
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        page.select_option("#model", model)
        for name in CLASSES:
            page.fill("#class-search", name)
            page.wait_for_selector("#class-options li.active")
            page.press("#class-search", "Enter")
        page.fill("#per-class", "4")
        page.click("#generate")
        page.wait_for_function("/^done/.test(document.querySelector('#status').textContent)", timeout=600_000)
        page.click("#grid figure:nth-child(11)")
        page.wait_for_function("document.querySelector('#trajectory-img').naturalWidth > 0", timeout=600_000)
        save_screenshot(page, out)
        browser.close()


def drive_edit(url: str, model: str, out: Path, chromium: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1180, "height": 820})
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#edit-class option').length > 0")
        page.select_option("#model", model)
        page.fill("#edit-test", "0")
        page.click("#edit-load-test")
        page.wait_for_timeout(1500)
        box = page.locator("#edit-mask").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 60, cy - 20)
        page.mouse.down()
        page.mouse.move(cx + 60, cy - 20, steps=10)
        page.mouse.move(cx + 60, cy + 20, steps=4)
        page.mouse.move(cx - 60, cy + 20, steps=10)
        page.mouse.up()
        page.select_option("#edit-method", "repaint")
        page.click("#edit-run")
        page.wait_for_function("!document.getElementById('edit-result').hidden && "
                               "document.getElementById('edit-result-img').naturalWidth > 0", timeout=600_000)
        save_screenshot(page, out)
        browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    ap.add_argument("--model", default="fashion_mnist-32-cpu")
    ap.add_argument("--edit", action="store_true", help="the editing panel instead of a generation")
    args = ap.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("serve_screenshot: chromium is not installed", file=sys.stderr)
        return 2
    models = discover(None, [], released=True)
    if args.model not in models:
        print(f"serve_screenshot: {args.model} is not among the released checkpoints: {', '.join(models)}",
              file=sys.stderr)
        return 2
    app = create_app({args.model: models[args.model]}, "cpu")
    with background(app) as url:
        (drive_edit if args.edit else drive)(url, args.model, args.out, chromium)
    app.state.jobs.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
