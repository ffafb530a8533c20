"""`largo report RUN_DIR`: one self-contained HTML page with every metric value of the run's JSON files; it loads
in a real browser (headless Chromium, where installed) with no console errors and every image decoded."""

import base64
import html
import io
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from largo.cli import main
from largo.viz.report import flatten

METRICS = {  # a fake `largo eval` result, nested like the real ones
    "name": "ddim-4-cfg3",
    "fid": 123.45678912345,
    "kid": {"mean": 0.0123456789, "std": 0.00042},
    "classifier": {"accuracy": 0.875, "per_class": [{"class": "Trouser", "fd": 3.25}, {"class": "Bag", "fd": 7}]},
    "n_generated": 20,
    "inception": None,
    "guided": True,
    "tiny": 1.5e-07,
}
OTHER = {"variance_gap": -0.031415, "note": "a <b>markup</b> & ampersand"}


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_run, run)  # the report reads every eval JSON of its run: a copy holds only these
    (run / "eval").mkdir()
    (run / "eval" / "ddim-4-cfg3.json").write_text(json.dumps(METRICS, indent=2))
    (run / "eval" / "nested").mkdir()
    (run / "eval" / "nested" / "extra.json").write_text(json.dumps(OTHER))
    assert main(["report", str(run), "--n", "1", "--steps", "2", "--device", "cpu"]) == 0
    index = run / "report" / "index.html"
    return run, index, index.read_text(encoding="utf-8")


def _shown(value):
    """How a value appears in the page: floats' exact JSON in a title, everything else as text."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        return html.escape(value)
    return json.dumps(value)


def test_flatten_uses_dotted_keys():
    assert flatten({"a": {"b": 1, "c": [2, {"d": 3}]}, "e": {}}) == [("a.b", 1), ("a.c.0", 2), ("a.c.1.d", 3),
                                                                      ("e", {})]


def test_report_shows_every_metric_value_of_every_json(report):
    _, _, page = report
    for rel, data in (("eval/ddim-4-cfg3.json", METRICS), ("eval/nested/extra.json", OTHER)):
        assert html.escape(rel) in page
        for key, value in flatten(data):
            assert f"<th>{html.escape(key)}</th>" in page, key
            assert _shown(value) in page, (key, value)
    assert "<b>markup</b>" not in page  # escaped, not rendered


def test_report_is_self_contained(report):
    run, index, page = report
    assert {p.name for p in index.parent.iterdir()} == {"index.html", "curves.png", "samples.png",
                                                        "trajectory.png"}
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page and "@import" not in page
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    for s in sources:
        Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).verify()
    assert "meta.json" not in page  # checkpoint metadata is not a metric
    assert '"lr": 0.001' not in page and "schedule" in page  # the config is a table, not raw JSON


def test_report_bad_input_is_one_line(report, tmp_path, capsys):
    run, _, _ = report
    no_log = tmp_path / "no-log"
    shutil.copytree(run, no_log, ignore=shutil.ignore_patterns("report", "tensorboard"))
    (no_log / "log.jsonl").unlink()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.json").write_text((run / "config.json").read_text())
    for target, expected in ((no_log, "log.jsonl"), (fresh, "no complete checkpoint"),
                             (tmp_path / "missing", "missing")):
        capsys.readouterr()
        assert main(["report", str(target), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("largo: error: ") and expected in err and "\n" not in err
    assert main(["report", str(run), "--class", "Trowser", "--device", "cpu"]) == 2


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    _, index, _ = report
    url = index.resolve().as_uri()
    base = [shutil.which("chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:500]
    # The page's own check, run on load: every <img> complete with naturalWidth > 0, no script errors.
    assert 'data-check="ok"' in body.group(0) and 'data-images="3"' in body.group(0), body.group(0)
    console = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,2000", url], capture_output=True,
                   timeout=180, check=True)
    with Image.open(shot) as im:
        assert im.size == (1200, 2000)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100  # something was drawn
