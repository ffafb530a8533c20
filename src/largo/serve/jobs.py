"""One worker thread per server and a FIFO queue: generations (and trajectories) run one at a time, so two
browser tabs do not overload the machine; a queued or running generation can be cancelled between sampler
steps. Everything a job produces stays in memory."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

MAX_JOBS = 32  # finished jobs kept (with their images) before the oldest is forgotten
MAX_WAITING = 8  # jobs queued or running at once


class Cancelled(Exception):
    """Raised inside a running job (from the sampler's step callback) once it has been cancelled."""


class QueueFull(Exception):
    pass


@dataclass
class Job:
    """A generation: its request, progress, and the images (dicts with PNG bytes) as they arrive."""
    id: str
    request: dict
    total: int = 0  # sampler steps over all its batches
    done: int = 0
    status: str = "queued"  # queued → running → done | cancelled | failed
    error: str = ""
    images: list[dict] = field(default_factory=list)
    plan: Any = None  # what the runner needs (the server's checked request)
    created: float = field(default_factory=time.time)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "cancelled", "failed")

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled

    def progress(self, done: int, total: int) -> None:
        """The sampler's step callback: record progress, stop if cancelled."""
        self.done, self.total = done, total
        self.check_cancelled()


class JobQueue:
    """`submit` a job with the function that runs it; the worker thread runs jobs (and `call`s) in order."""

    def __init__(self, max_jobs: int = MAX_JOBS, max_waiting: int = MAX_WAITING):
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.max_jobs, self.max_waiting = max_jobs, max_waiting
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._order: list[str] = []  # ids of jobs queued or running, in order
        self._worker = threading.Thread(target=self._work, name="largo-serve-worker", daemon=True)
        self._worker.start()

    def submit(self, request: dict, run: Callable[[Job], None], plan: Any = None) -> Job:
        with self._lock:
            if len(self._order) >= self.max_waiting:
                raise QueueFull(f"{len(self._order)} generations are already waiting; cancel one or try again later")
            job = Job(id=f"{next(self._ids)}-{int(time.time() * 1000) % 100000:05d}", request=request, plan=plan)
            self.jobs[job.id] = job
            self._order.append(job.id)
            self._forget_old()
        self._queue.put(lambda: self._run(job, run))
        return job

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run `fn` on the worker, after the jobs queued before it, and return its result (or raise its error)."""
        future: Future = Future()

        def task() -> None:
            try:
                future.set_result(fn())
            except BaseException as e:  # handed to the caller
                future.set_exception(e)

        self._queue.put(task)
        return future.result(timeout)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def position(self, job: Job) -> int:
        """0 while running, k when k jobs are ahead of it, -1 once finished."""
        with self._lock:
            return self._order.index(job.id) if job.id in self._order else -1

    def cancel(self, job: Job) -> None:
        job.cancel_event.set()
        with self._lock:
            if job.status == "queued":
                job.status = "cancelled"
                self._order.remove(job.id)

    def close(self, timeout: float = 30) -> None:
        """Cancel every job and stop the worker once its current step ends (before the process exits)."""
        with self._lock:
            waiting = [self.jobs[i] for i in self._order if i in self.jobs]
        for job in waiting:
            self.cancel(job)
        self._queue.put(None)
        self._worker.join(timeout)

    def _forget_old(self) -> None:
        while len(self.jobs) > self.max_jobs:
            old = next((k for k, j in self.jobs.items() if j.finished), None)
            if old is None:
                return
            del self.jobs[old]

    def _run(self, job: Job, run: Callable[[Job], None]) -> None:
        with self._lock:
            if job.status != "queued":
                return
            job.status = "running"
        try:
            run(job)
            status, error = "done", ""
        except Cancelled:
            status, error = "cancelled", ""
        except Exception as e:  # a failed generation is reported on the job; the worker carries on
            status, error = "failed", (str(e).splitlines() or [type(e).__name__])[0]
        with self._lock:
            job.status, job.error = status, error
            if job.id in self._order:
                self._order.remove(job.id)

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            try:
                task()
            except Exception:  # noqa: S110 - a task reports its own errors; the worker must survive
                pass
