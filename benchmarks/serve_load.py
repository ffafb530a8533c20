"""Load benchmark of `largo serve` on 127.0.0.1 (docs/RELIABILITY.md, "The playground under load").

Trains a tiny model (two steps on 16×16 Fashion-MNIST, a second), starts `largo serve` on it in a subprocess, then
for each client count (default 4, 16, 64) runs that many client threads for `--seconds` each. A client submits a
generation, polls it, fetches an image and the zip; now and then it cancels a generation mid-way, asks for a
trajectory, or drops the connection in the middle of a download. Everything is bounded (time per phase, requests
per client) and the script stops by itself.

Reported: answers by status per endpoint (only 2xx and 4xx/503 are allowed: a 5xx or a connection error fails the
run), latency percentiles per endpoint, the server's resident memory (VmRSS from /proc) over time, and what is
left once the clients stop: jobs not finished, server threads and open file descriptors against their count
before the load, files written under the server's working folder.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/serve_load.py --clients 4 16 64 --seconds 40
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def train_tiny(run: Path) -> None:
    from helpers import tiny_config

    from largo.train.trainer import Trainer

    cfg = tiny_config(steps=2, device="cpu", checkpoint_every=2)
    cfg.data = dataclasses.replace(cfg.data, subset=64)
    Trainer(cfg, run, progress=False).fit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.bad: list[str] = []
        self.accepted_jobs: list[str] = []
        self.cancelled_jobs: list[str] = []

    def record(self, endpoint: str, seconds: float, status: int | str) -> None:
        with self.lock:
            self.latency[endpoint].append(seconds)
            self.status[endpoint][str(status)] += 1
            if isinstance(status, str) or status >= 500:
                self.bad.append(f"{endpoint}: {status}")


def call(stats: Stats, client: httpx.Client, endpoint: str, method: str, url: str, **kw) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        r = client.request(method, url, **kw)
    except httpx.HTTPError as e:
        stats.record(endpoint, time.perf_counter() - t0, f"{type(e).__name__}")
        return None
    stats.record(endpoint, time.perf_counter() - t0, r.status_code)
    if 400 <= r.status_code < 500 and "\n" in r.json().get("detail", "\n"):
        stats.bad.append(f"{endpoint}: {r.status_code} without a one-line detail")
    return r


def drop_mid_download(port: int, path: str) -> None:
    """Ask for the zip and close the socket after the first bytes (a client that goes away mid-download)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        s.recv(64)


def client_loop(i: int, base: str, port: int, model: str, stats: Stats, deadline: float, max_requests: int) -> None:
    rng = random.Random(i)
    sent = 0
    with httpx.Client(base_url=base, timeout=60) as client:
        while time.monotonic() < deadline and sent < max_requests:
            body = {"model": model, "classes": rng.sample(range(10), rng.randint(1, 3)), "per_class": rng.randint(1, 2),
                    "steps": rng.randint(2, 8), "sampler": rng.choice(["ddim", "dpmpp2m", "euler"]),
                    "seed": rng.randint(0, 1000)}
            r = call(stats, client, "POST /api/generate", "POST", "/api/generate", json=body)
            sent += 1
            if r is None or r.status_code != 200:
                time.sleep(0.2 + rng.random() * 0.3)  # 429: the queue is full; back off
                continue
            job = r.json()["job"]
            with stats.lock:
                stats.accepted_jobs.append(job)
            cancel = rng.random() < 0.15
            view = None
            while time.monotonic() < deadline + 30:
                r = call(stats, client, "GET /api/jobs/{id}", "GET", f"/api/jobs/{job}")
                sent += 1
                if r is None or r.status_code != 200:
                    break
                view = r.json()
                if cancel and view["status"] in ("queued", "running"):
                    call(stats, client, "POST /api/jobs/{id}/cancel", "POST", f"/api/jobs/{job}/cancel")
                    with stats.lock:
                        stats.cancelled_jobs.append(job)
                    cancel = False
                if view["status"] in ("done", "cancelled", "failed"):
                    break
                time.sleep(0.2)
            if not view or not view["images"]:
                continue
            call(stats, client, "GET /api/jobs/{id}/images/{k}", "GET", view["images"][0]["url"])
            if rng.random() < 0.1:
                drop_mid_download(port, view["download_url"])
                stats.record("GET /api/jobs/{id}/download (dropped)", 0.0, 200)
            else:
                call(stats, client, "GET /api/jobs/{id}/download", "GET", view["download_url"])
            if rng.random() < 0.03:
                call(stats, client, "GET .../trajectory", "GET", view["images"][0]["trajectory_url"])
            sent += 2


def percentiles(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * len(v)))] * 1000  # noqa: E731
    return {"n": len(v), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": v[-1] * 1000,
            "mean": statistics.fmean(v) * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--seconds", type=float, default=40.0, help="per client count")
    ap.add_argument("--max-requests", type=int, default=2000, help="per client and phase")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    train_tiny(work / "tiny")
    cwd = work / "server-cwd"
    cwd.mkdir()
    port = free_port()
    env = {**os.environ, "LARGO_CACHE": str(work / "cache")}
    server = subprocess.Popen([sys.executable, "-m", "largo", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--runs", "", "--no-released", "--checkpoints", str(work / "tiny"), "--device", "cpu"],
                              cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                models = httpx.get(f"{base}/api/models", timeout=2).json()["models"]
                break
            except httpx.HTTPError:
                if server.poll() is not None:
                    raise SystemExit(f"the server stopped: {server.stdout.read()}") from None
                time.sleep(0.1)
        model = models[0]["id"]
        before = proc_status(server.pid)
        rss: list[tuple[float, int, int]] = []  # (seconds, KiB, accepted jobs so far)
        stats = Stats()
        t_start = time.monotonic()
        stop_sampling = threading.Event()

        def sample_rss() -> None:
            while not stop_sampling.is_set():
                rss.append((time.monotonic() - t_start, proc_status(server.pid)["VmRSS"], len(stats.accepted_jobs)))
                stop_sampling.wait(1.0)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        phases = []
        for n in a.clients:
            phase_stats = Stats()
            deadline = time.monotonic() + a.seconds
            threads = [threading.Thread(target=client_loop, args=(i, base, port, model, phase_stats, deadline,
                                                                  a.max_requests)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            with stats.lock:
                stats.accepted_jobs += phase_stats.accepted_jobs
                stats.cancelled_jobs += phase_stats.cancelled_jobs
                stats.bad += phase_stats.bad
            phases.append({"clients": n, "status": {k: dict(v) for k, v in phase_stats.status.items()},
                           "latency_ms": {k: percentiles(v) for k, v in phase_stats.latency.items() if v},
                           "accepted": len(phase_stats.accepted_jobs), "cancelled": len(phase_stats.cancelled_jobs),
                           "bad": phase_stats.bad[:20]})
        # Once the clients stop, the queue drains; then nothing should be left.
        time.sleep(3)
        left = []
        with httpx.Client(base_url=base, timeout=30) as c:
            for job in stats.accepted_jobs[-32:]:
                r = c.get(f"/api/jobs/{job}")
                if r.status_code == 200 and r.json()["status"] in ("queued", "running"):
                    left.append(job)
            cancelled_state = [c.get(f"/api/jobs/{j}").json().get("status") for j in stats.cancelled_jobs[-8:]]
        stop_sampling.set()
        sampler.join()
        after = proc_status(server.pid)
        first_eviction = next((i for i, (_, _, n) in enumerate(rss) if n > 32), None)
        after_evict = [k for _, k, _ in rss[first_eviction:]] if first_eviction is not None else []
        result = {
            "phases": phases, "seconds_per_phase": a.seconds, "jobs_accepted": len(stats.accepted_jobs),
            "rss_kib": {"start": before["VmRSS"], "at_first_eviction": after_evict[0] if after_evict else None,
                        "max_after_first_eviction": max(after_evict) if after_evict else None,
                        "end": after["VmRSS"], "samples": [[round(t), k] for t, k, _ in rss[::5]]},
            "left_behind": {"jobs_queued_or_running": left, "threads_before_after": [before["Threads"], after["Threads"]],
                            "fds_before_after": [before["fds"], after["fds"]],
                            "files_in_server_cwd": sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*")),
                            "cancelled_jobs_status": cancelled_state},
            "bad": stats.bad[:50],
        }
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    text = json.dumps(result, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    for p in phases:
        print(f"\n{p['clients']} clients: accepted {p['accepted']} generations, cancelled {p['cancelled']}")
        for ep, st in sorted(p["status"].items()):
            lat = p["latency_ms"].get(ep, {})
            print(f"  {ep:40s} {dict(st)}  p50 {lat.get('p50', 0):7.1f} ms  p90 {lat.get('p90', 0):7.1f}  "
                  f"p99 {lat.get('p99', 0):7.1f}  max {lat.get('max', 0):7.1f}")
    r = result["rss_kib"]
    print(f"\nRSS MiB: start {r['start'] / 1024:.0f}, at first eviction "
          f"{(r['at_first_eviction'] or 0) / 1024:.0f}, max after {(r['max_after_first_eviction'] or 0) / 1024:.0f}, "
          f"end {r['end'] / 1024:.0f}")
    ok = not result["bad"] and not result["left_behind"]["jobs_queued_or_running"]
    print("OK: only 2xx and 4xx/503 answers, nothing left running" if ok else f"FAILED: {result['bad'][:5]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
