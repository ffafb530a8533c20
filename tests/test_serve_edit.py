"""`largo serve`'s editing API (POST /api/edit, through FastAPI's TestClient on the session's tiny run): an uploaded
image edited by inpainting comes back with its unmasked pixels exact, image-to-image at strength 0 returns the
upload; a mask of another size, a non-image, a strength outside [0, 1] and an unknown model are one-line 4xx
answers, and nothing is written."""

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from largo.serve.app import create_app  # noqa: E402
from largo.serve.catalog import discover  # noqa: E402


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def client(tiny_run):
    app = create_app(discover(None, [str(tiny_run)], released=False), "cpu")
    with TestClient(app) as c:
        yield c, tiny_run.name
    app.state.jobs.close()


def _wait(client, job_id: str) -> dict:
    for _ in range(600):
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError("the edit did not finish")


SOURCE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8))


def test_inpainting_and_image_to_image_through_the_api(client, tmp_path, monkeypatch):
    c, model = client
    monkeypatch.chdir(tmp_path)
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    r = c.post("/api/edit", json={"model": model, "edit": "inpaint", "image": "data:image/png;base64," + _b64(SOURCE),
                                  "mask": _b64(Image.fromarray(mask)), "target": 7, "method": "ddnm", "steps": 3,
                                  "seed": 4})
    assert r.status_code == 200, r.text
    job = _wait(c, r.json()["job"])
    assert job["status"] == "done", job["error"]
    info = job["images"][0]
    assert info["edit"] == "inpaint" and info["method"] == "ddnm" and info["class"] == "Sneaker"
    out = np.array(Image.open(io.BytesIO(c.get(info["url"]).content)))
    keep = mask == 0
    assert np.array_equal(out[keep], np.array(SOURCE)[keep]) and not np.array_equal(out, np.array(SOURCE))
    assert c.get(info["trajectory_url"]).status_code == 404
    r = c.post("/api/edit", json={"model": model, "edit": "img2img", "image": _b64(SOURCE), "target": 2,
                                  "strength": 0.0, "steps": 3})
    job = _wait(c, r.json()["job"])
    out = np.array(Image.open(io.BytesIO(c.get(job["images"][0]["url"]).content)))
    assert np.array_equal(out, np.array(SOURCE))
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("change, status, words", [
    ({"mask": _b64(Image.new("L", (28, 28), 255))}, 422, "the mask is 28×28, the image 16×16"),
    ({"image": base64.b64encode(b"GIF89a not really").decode()}, 422, "not an image"),
    ({"image": "%%%"}, 422, "not base64"),
    ({"edit": "img2img", "mask": None, "strength": 1.5}, 422, "strength"),
    ({"model": "../../etc/passwd"}, 404, "unknown model"),
    ({"target": 10}, 422, "not a class"),
    ({"mask": None}, 422, "inpainting needs a mask"),
    ({"image": _b64(Image.new("RGB", (32, 32)))}, 422, "the image is 32×32"),
])
def test_bad_edits_are_one_line_4xx(client, change, status, words):
    c, model = client
    body = {"model": model, "edit": "inpaint", "image": _b64(SOURCE), "mask": _b64(Image.new("L", (16, 16), 255)),
            "target": 1, "steps": 2, **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = c.post("/api/edit", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words in detail and "\n" not in detail


def test_the_edit_body_is_bounded(client):
    c, model = client
    r = c.post("/api/edit", content=b"x" * (600 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "at most" in r.json()["detail"]


def test_the_edit_request_fields_are_options_or_say_what_to_edit():
    import dataclasses

    from largo.sampling import SamplingOptions
    from largo.serve.app import OPTION_FIELDS, EditRequest

    fields = {f.name for f in dataclasses.fields(SamplingOptions)}
    request = set(EditRequest.model_fields)
    assert request & fields == set(OPTION_FIELDS)
    assert request - fields == {"model", "edit", "image", "mask", "target", "strength", "method", "seed"}
