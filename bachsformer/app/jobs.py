"""Composing off the request threads: a bounded queue, one worker (the models use the CPU fully),
and a bounded memory of finished pieces whose files are deleted when they are forgotten.
"""
from __future__ import annotations

import queue
import secrets
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field

from .studio import RequestError

MAX_WAITING = 8  # requests queued behind the one being composed; more are refused as busy
MAX_KEPT = 32  # finished pieces kept for the page to fetch; the oldest is forgotten first


class Busy(Exception):
    """The queue is full: the page says so and the user tries again."""


@dataclass
class Job:
    id: str
    work: object  # a callable(job) -> Rendered
    state: str = "queued"  # queued, running, done, failed
    result: object = None
    error: str | None = None
    created: float = field(default_factory=time.perf_counter)
    seconds: float | None = None  # from the request to the finished piece


class JobQueue:
    """Jobs run one at a time by a worker thread; `submit` never blocks."""

    def __init__(self, max_waiting: int = MAX_WAITING, max_kept: int = MAX_KEPT, on_forget=None, warm_up=None):
        """`warm_up`, if given, is called by the worker before the first job (jobs wait for it)."""
        self._warm_up = warm_up
        self.warm = threading.Event()  # set once the warm-up is over
        self._queue = queue.Queue(maxsize=max_waiting)
        self._jobs = OrderedDict()
        self._lock = threading.Lock()
        self.max_kept = max_kept
        self.on_forget = on_forget or (lambda job: None)
        self._worker = threading.Thread(target=self._run, name="composer", daemon=True)
        self._worker.start()

    def submit(self, work) -> Job:
        job = Job(secrets.token_hex(8), work)
        with self._lock:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise Busy(f"busy: {self._queue.qsize()} pieces are waiting; try again in a moment") from None
            self._jobs[job.id] = job
            self._forget_old()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def waiting(self) -> int:
        return self._queue.qsize()

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        while len(self._jobs) > self.max_kept and finished:
            job = finished.pop(0)
            del self._jobs[job.id]
            self.on_forget(job)

    def _run(self) -> None:
        if self._warm_up is not None:
            try:
                self._warm_up()
            except Exception:  # a bug: logged with its traceback; the jobs still run
                traceback.print_exc()
        self.warm.set()
        while True:
            job = self._queue.get()
            job.state = "running"
            try:
                job.result = job.work(job)
                job.state = "done"
            except RequestError as e:
                job.error, job.state = str(e), "failed"
            except Exception as e:  # a bug: said to the page, logged with its traceback, the server goes on
                traceback.print_exc()
                job.error, job.state = f"internal error: {type(e).__name__}: {e}", "failed"
            job.seconds = time.perf_counter() - job.created
            with self._lock:
                self._forget_old()
