"""`largo serve`'s API (through FastAPI's TestClient, a tiny trained model): generations arrive as PNGs carrying
their settings, with trajectories and a zip; bad requests get a 4xx with one line, the server keeps answering
and no file is written; cancelling stops a job; the command's own mistakes are one line."""

import io
import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from largo.cli import main  # noqa: E402
from largo.serve.app import create_app  # noqa: E402
from largo.serve.catalog import discover  # noqa: E402
from largo.serve.jobs import JobQueue  # noqa: E402

RELEASED = "fashion_mnist-32-cpu"


def _files(*roots: Path) -> set[Path]:
    return {p for root in roots for p in root.rglob("*")}


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory) -> Path:
    """A runs folder with the tiny run two levels down and an autoencoder run that must not be listed."""
    root = tmp_path_factory.mktemp("serve-runs")
    shutil.copytree(tiny_run, root / "study" / "tiny")
    ae = root / "ae" / "checkpoints" / "step_00000001"
    ae.mkdir(parents=True)
    (root / "ae" / "config.json").write_text("{}")
    shutil.copy(Path(__file__).resolve().parents[1] / "checkpoints" / "autoencoder-flowers128" / "meta.json", ae)
    return root


@pytest.fixture(scope="module")
def client(runs):
    app = create_app(discover(runs, []), "cpu", JobQueue(max_waiting=3))
    with TestClient(app) as c:
        yield c
    app.state.jobs.close()


def wait(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "cancelled", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_lists_released_checkpoints_and_runs_but_no_autoencoders(client):
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    assert "study/tiny" in models and "ae" not in models and "autoencoder-flowers128" not in models
    tiny = models["study/tiny"]
    assert tiny["source"] == "run" and tiny["resolution"] == 16 and "Sneaker" in tiny["classes"]
    assert tiny["defaults"] == {"sampler": "ddim", "steps": 4, "cfg": pytest.approx(tiny["defaults"]["cfg"])}
    if (Path(__file__).resolve().parents[1] / "checkpoints" / RELEASED).is_dir():
        assert models[RELEASED]["source"] == "released"


def test_generation_arrives_as_pngs_with_settings_trajectories_and_a_zip(client):
    started = client.post("/api/generate", json={"model": "study/tiny", "classes": [7, 9], "per_class": 2, "seed": 5})
    assert started.status_code == 200, started.text
    job = wait(client, started.json()["job"])
    assert job["status"] == "done" and job["done"] == job["total"] > 0
    assert [(i["class"], i["seed"]) for i in job["images"]] == [("Sneaker", 5), ("Sneaker", 6), ("Ankle boot", 7),
                                                              ("Ankle boot", 8)]
    png = client.get(job["images"][1]["url"])
    image = Image.open(io.BytesIO(png.content))
    assert png.headers["content-type"] == "image/png" and image.size == (16, 16)
    settings = json.loads(image.text["largo"])
    assert settings | {"largo_version": "-"} == {"model": "study/tiny", "class": "Sneaker", "class_index": 7, "seed": 6,
                                                  "sampler": "ddim", "steps": 4, "cfg": settings["cfg"], "eta": 0.0,
                                                  "spacing": settings["spacing"], "cfg_interval": None,
                                                  "clip_x0": settings["clip_x0"], "precision": settings["precision"],
                                                  "guide_with": None, "largo_version": "-"}
    one = client.get(job["images"][1]["url"], params={"download": 1})
    assert one.content == png.content and "attachment" in one.headers["content-disposition"]
    strip = client.get(job["images"][1]["trajectory_url"])
    assert strip.status_code == 200 and Image.open(io.BytesIO(strip.content)).width > 4 * 16
    with zipfile.ZipFile(io.BytesIO(client.get(job["download_url"]).content)) as z:
        names = sorted(z.namelist())
        assert names == ["00_Sneaker_seed5.png", "01_Sneaker_seed6.png", "02_Ankle_boot_seed7.png",
                         "03_Ankle_boot_seed8.png", "settings.json"]
        assert z.read("01_Sneaker_seed6.png") == png.content


def test_the_same_settings_draw_the_same_images(client):
    body = {"model": "study/tiny", "classes": [3], "per_class": 2, "seed": 11, "steps": 3, "sampler": "dpmpp2m"}
    a, b = (wait(client, client.post("/api/generate", json=body).json()["job"]) for _ in range(2))
    assert [client.get(i["url"]).content for i in a["images"]] == [client.get(i["url"]).content for i in b["images"]]


def test_released_model_gets_the_domain_classifiers_verdict(client):
    if RELEASED not in {m["id"] for m in client.get("/api/models").json()["models"]}:
        pytest.skip(f"released checkpoint {RELEASED} not found")
    started = client.post("/api/generate", json={"model": RELEASED, "classes": [1], "per_class": 2, "steps": 3})
    job = wait(client, started.json()["job"])
    verdicts = [i["verdict"] for i in job["images"]]
    assert job["status"] == "done" and len(verdicts) == 2
    assert all(v["class"] in {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                              "Bag", "Ankle boot"} and 0 < v["confidence"] <= 1 for v in verdicts)


BAD_REQUESTS = [
    ({"model": "../../etc/passwd", "classes": [0]}, 404, "unknown model '../../etc/passwd'"),
    ({"model": "/etc/passwd", "classes": [0]}, 404, "unknown model '/etc/passwd'"),
    ({"model": "study/../study/tiny", "classes": [0]}, 404, "unknown model"),
    ({"model": "study/tiny", "classes": [0], "steps": 5000}, 422, "steps: Input should be less than or equal to 1000"),
    ({"model": "study/tiny", "classes": [0], "steps": 0}, 422, "steps:"),
    ({"model": "study/tiny", "classes": [0], "steps": "4"}, 422, "steps: Input should be a valid integer"),
    ({"model": "study/tiny", "classes": [0], "steps": 2.5}, 422, "steps:"),
    ({"model": "study/tiny", "classes": [0], "per_class": -1}, 422, "per_class:"),
    ({"model": "study/tiny", "classes": [0], "per_class": 17}, 422, "per_class:"),
    ({"model": "study/tiny", "classes": [0] * 10, "per_class": 16}, 422, "at most 64 per generation"),
    ({"model": "study/tiny", "classes": [10]}, 422, "10 is not a class of study/tiny"),
    ({"model": "study/tiny", "classes": [-1]}, 422, "classes.0:"),
    ({"model": "study/tiny", "classes": []}, 422, "classes:"),
    ({"model": "study/tiny", "classes": "0"}, 422, "classes:"),
    ({"model": "study/tiny", "classes": [0], "cfg": 1e308}, 422, "cfg:"),
    ({"model": "study/tiny", "classes": [0], "cfg": -0.5}, 422, "cfg:"),
    ({"model": "study/tiny", "classes": [0], "seed": 2**31}, 422, "seed:"),
    ({"model": "study/tiny", "classes": [0], "seed": 10**40}, 422, "seed:"),
    ({"model": "study/tiny", "classes": [0], "sampler": "plms"}, 422, "unknown sampler 'plms'"),
    ({"model": "study/tiny", "classes": [0], "path": "/etc/passwd"}, 422, "path: Extra inputs are not permitted"),
    ({"model": 7, "classes": [0]}, 422, "model:"),
    ({"classes": [0]}, 422, "model: Field required"),
    ([1, 2], 422, "request body:"),
    ("not json{", 422, "not valid JSON"),
    ("", 422, "request body:"),
    ('{"model": "study/tiny", "classes": [0], "x": "' + "a" * 100_000 + '"}', 413, "at most 65536 bytes"),
]


@pytest.mark.parametrize("body,status,needle", BAD_REQUESTS, ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_bad_requests_are_one_line_4xx_and_the_server_still_answers(client, runs, tmp_path, monkeypatch, body,
                                                                    status, needle):
    monkeypatch.chdir(tmp_path)
    before = _files(runs, tmp_path)
    if isinstance(body, str):
        r = client.post("/api/generate", content=body.encode(), headers={"content-type": "application/json"})
    else:
        r = client.post("/api/generate", json=body)
    detail = r.json()["detail"]
    assert r.status_code == status and isinstance(detail, str) and "\n" not in detail and needle in detail, r.text
    assert client.get("/api/models").status_code == 200
    assert _files(runs, tmp_path) == before


@pytest.mark.parametrize("url,status", [
    ("/api/jobs/..%2F..%2Fetc%2Fpasswd", 404), ("/api/jobs/nope/images/0", 404), ("/api/jobs/nope/download", 404),
    ("/api/jobs/nope/images/abc", 422), ("/static/..%2F..%2F..%2Fetc%2Fpasswd", 404), ("/static/index.py", 404),
    ("/docs", 404), ("/openapi.json", 404),
])
def test_bad_urls_are_one_line_4xx(client, url, status):
    r = client.get(url)
    assert r.status_code == status and "\n" not in r.json()["detail"], r.text
    assert client.get("/").status_code == 200


def test_cancel_stops_a_running_job_and_a_queued_one(client):
    long = {"model": "study/tiny", "classes": list(range(10)), "per_class": 6, "steps": 1000, "sampler": "ddim"}
    running = client.post("/api/generate", json=long).json()["job"]
    queued = client.post("/api/generate", json={**long, "classes": [0], "per_class": 1}).json()
    assert queued["position"] == 1
    third = client.post("/api/generate", json=long).json()["job"]  # the third waiting job fills the queue
    full = client.post("/api/generate", json=long)
    assert full.status_code == 429 and "already waiting" in full.json()["detail"]
    while client.get(f"/api/jobs/{running}").json()["done"] == 0:
        time.sleep(0.02)
    assert client.post(f"/api/jobs/{queued['job']}/cancel").json()["status"] == "cancelled"
    t = time.monotonic()
    client.post(f"/api/jobs/{running}/cancel")
    job = wait(client, running, timeout=20)
    assert job["status"] == "cancelled" and len(job["images"]) < 60 and time.monotonic() - t < 10
    client.post(f"/api/jobs/{third}/cancel")
    assert wait(client, third)["status"] == "cancelled"


def test_the_command_refuses_mistakes_in_one_line(capsys, monkeypatch):
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --port: must be an integer in [1, 65535], got 0" in err[0], err
    assert main(["serve", "--checkpoints", "/no/such/run", "--port", "7869"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run, checkpoint or released checkpoint named /no/such/run" in err[0], err


def test_the_command_without_fastapi_names_the_extra(capsys, monkeypatch):
    import largo.serve

    for name in ("app", "server"):  # as if never imported, so that importing them meets the missing fastapi
        monkeypatch.delitem(sys.modules, f"largo.serve.{name}")
        monkeypatch.delattr(largo.serve, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", "--checkpoints", "/no/such/run"]) == 2  # (a bad path too: never starts a server)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["largo: error: largo serve needs FastAPI and uvicorn: pip install 'largo[serve]'"]


def test_a_busy_port_is_one_line(capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port), "--no-released", "--runs", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"port {port} on 127.0.0.1 is in use" in err[0], err
    assert os.environ.get("LARGO_CACHE")  # the session's isolated cache: nothing above touched the user's
