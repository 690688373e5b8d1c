"""A library spread over machines with RQ: one job per book on a Redis queue, taken by
`imaginize worker` processes on any number of hosts.

A job is plain data, stored as JSON (rq's JSONSerializer, never pickle): the book's path, the
name of its output folder, the enqueuer's `--output-dir` and the run options given on the
command line. Paths are the worker's: the books must be reachable at the same path on every
worker host (shared storage), and the output goes to the worker host's folder.

A worker is an rq `SimpleWorker`: it runs a book in its own process (today's per-book
launcher, with its N analysis processes and the manifest on local disk) and, from a thread,
renews the book's entry in rq's StartedJobRegistry every `requeue_after / 4` seconds. What is
guaranteed, and what is not:

- A book whose worker dies, even by `kill -9`, stops being renewed; `requeue_after` seconds
  later any worker's registry clean-up (rq's `StartedJobRegistry.cleanup`, run by idle
  workers every `requeue_after / 2`) finds it abandoned and, while the job has tries left
  (`Retry(max=tries - 1)`), puts it back on the queue; then it is failed.
- A book whose run stops with an error (unreadable book, incomplete, interrupted) spends a
  try the same way. A run that ends with some chapters failed is finished, not retried: the
  chapters have spent their own attempts.
- A worker that is alive but stalled (a stopped process, a frozen host) keeps its heartbeat
  thread going only while the process runs; a SIGSTOPped worker's book is requeued, and
  if the worker wakes up both run it: the manifest keeps them from doing a chapter twice
  only when the output folder is shared.

The CLI hands `work` a `Runner`, which runs one book the way `imaginize run` does; this module
never parses options itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaginize.errors import ConfigError, ExitCode, ImaginizeError
from imaginize.safetext import without_password

QUEUE_NAME = "imaginize"
# A book not renewed for this long (its worker died) goes back on the queue.
DEFAULT_REQUEUE_AFTER = 120.0
# Runs of one book, the first included, before it is left failed.
DEFAULT_TRIES = 3
# Finished and failed books stay listed by `status` this long.
KEEP_RESULTS = 7 * 86400

# book, output folder, run options as given to `enqueue` -> exit code (0, 1, ...) and message.
Runner = Callable[[Path, Path, dict[str, Any]], tuple[int, str]]

_INSTALL = "install 'imaginize[redis]'"


class BookRunFailed(ImaginizeError):
    """A queued book's run ended without finishing it (rq records this as the job's failure
    and requeues it while it has tries left)."""


@dataclass(frozen=True)
class BookJob:
    """One book on the queue: the job's only argument, as JSON."""

    book: str
    folder: str
    out_base: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "book": self.book,
            "folder": self.folder,
            "out_base": self.out_base,
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BookJob:
        return cls(data["book"], data["folder"], data.get("out_base"), data.get("options") or {})

    def out_dir(self, out_base: Path | None = None) -> Path:
        """The worker's `--output-dir`, else the enqueuer's, else beside the book."""
        base = out_base or (Path(self.out_base) if self.out_base else Path(self.book).parent)
        return base / self.folder

    def job_id(self) -> str:
        """The same book and folder get the same job, so enqueueing twice queues it once."""
        digest = hashlib.sha256(f"{self.book}\0{self.folder}".encode()).hexdigest()[:20]
        return f"imaginize-{digest}"


@dataclass(frozen=True)
class QueuedBook:
    """A book as `status` shows it."""

    state: str  # queued, running, finished, failed
    book: str
    host: str = ""
    detail: str = ""
    tries_left: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "book": self.book,
            "host": self.host,
            "detail": self.detail,
            "tries_left": self.tries_left,
        }


def connect(url: str) -> Any:
    """A Redis client for rq (bytes, not text), checked with a PING. ConfigError (exit 2) for
    a missing extra, a malformed URL or a server that does not answer."""
    try:
        import redis
        import rq  # noqa: F401  (checked here so the error is one line)
    except ImportError:
        raise ConfigError(f"--redis needs redis and rq: {_INSTALL}") from None
    shown = without_password(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    except ValueError as exc:
        raise ConfigError(f"--redis {shown}: not a Redis URL ({exc})") from None
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        raise ConfigError(f"--redis {shown}: cannot use it ({exc})") from None
    return client


def _queue(connection: Any, name: str) -> Any:
    from rq import Queue
    from rq.serializers import JSONSerializer

    return Queue(name, connection=connection, serializer=JSONSerializer)


def enqueue_books(
    connection: Any,
    books: Iterable[tuple[Path, str]],
    out_base: Path | None,
    options: dict[str, Any],
    *,
    queue_name: str = QUEUE_NAME,
    tries: int = DEFAULT_TRIES,
) -> list[tuple[str, bool]]:
    """One job per (book, output folder name). Returns each book with True when queued,
    False when it was already waiting or running (not queued twice)."""
    from rq import Retry
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    queue = _queue(connection, queue_name)
    busy = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
    added: list[tuple[str, bool]] = []
    for book, folder in books:
        base = str(out_base) if out_base else None
        job = BookJob(str(Path(book).resolve()), folder, base, options)
        try:
            found = Job.fetch(job.job_id(), connection=connection, serializer=queue.serializer)
            if found.get_status() in busy:
                added.append((job.book, False))
                continue
        except NoSuchJobError:
            pass
        queue.enqueue(
            run_book_job,
            job.to_json(),
            job_id=job.job_id(),
            description=f"imaginize {job.book}",
            job_timeout=-1,  # a book may take hours; a dead worker is found by its heartbeat
            result_ttl=KEEP_RESULTS,
            failure_ttl=KEEP_RESULTS,
            retry=Retry(max=tries - 1) if tries > 1 else None,
        )
        added.append((job.book, True))
    return added


def run_book_job(payload: dict[str, Any]) -> dict[str, Any]:
    """The job rq runs (by reference: `imaginize.workers.book_queue.run_book_job`): the book
    with the runner of the worker running it. Returns the plain result `status` shows."""
    from rq import get_current_job

    if _here.runner is None:
        raise BookRunFailed("this process is not an imaginize worker (no runner)")
    book = BookJob.from_json(payload)
    out_dir = book.out_dir(_here.out_base)
    job = get_current_job()
    if job is not None:
        job.meta.update(host=host_name(), pid=os.getpid(), out_dir=str(out_dir))
        job.save_meta()
    code, message = _here.runner(Path(book.book), out_dir, book.options)
    if code in (ExitCode.OK, ExitCode.CHAPTERS_FAILED):
        return {"exit": int(code), "out_dir": str(out_dir), "host": host_name(), "text": message}
    if code == ExitCode.INTERRUPTED:
        _here.stop = True  # the signal was this worker's too
    raise BookRunFailed(f"exit {code}: {message}")


def host_name() -> str:
    """The name `status` shows for this host (IMAGINIZE_HOST, for hosts that share one)."""
    return os.environ.get("IMAGINIZE_HOST") or socket.gethostname()


@dataclass
class _Here:
    """What the job function needs from the worker running it (rq calls it by reference, in
    this process: a SimpleWorker does not fork)."""

    runner: Runner | None = None
    out_base: Path | None = None
    stop: bool = False


_here = _Here()


def _worker_class() -> type:
    from rq.worker import SimpleWorker, WorkerStatus

    class BookWorker(SimpleWorker):
        """A SimpleWorker that renews its book's registry entry while the book runs."""

        requeue_after: float = DEFAULT_REQUEUE_AFTER

        def _set_ip_address(self, connection: Any) -> None:
            try:
                super()._set_ip_address(connection)
            except ValueError:  # a CLIENT INFO redis-py cannot parse (fakeredis's)
                self.ip_address = "unknown"

        def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
            return max(2, int(self.requeue_after))

        def execute_job(self, job: Any, queue: Any) -> None:
            execution = self.prepare_execution(job)
            done = threading.Event()
            beat = threading.Thread(target=self._renew, args=(job, execution, done), daemon=True)
            beat.start()
            try:
                self.perform_job(job, queue, execution)
            finally:
                done.set()
                beat.join()
            self.set_state(WorkerStatus.IDLE)
            if _here.stop:
                self._stop_requested = True

        def _renew(self, job: Any, execution: Any, done: threading.Event) -> None:
            import redis

            while not done.wait(self.requeue_after / 4):
                # Redis away: the next beat tries again; the run goes on.
                with contextlib.suppress(redis.exceptions.RedisError):
                    self.maintain_heartbeats(job, execution)

    return BookWorker


def work(
    connection: Any,
    runner: Runner,
    *,
    queue_name: str = QUEUE_NAME,
    out_base: Path | None = None,
    burst: bool = False,
    requeue_after: float = DEFAULT_REQUEUE_AFTER,
) -> bool:
    """Take books off the queue and run them until stopped (SIGINT or SIGTERM: after the
    book in hand, which the run gives back and requeues on a second one), or, with `burst`,
    until the queue is empty. Returns whether any book was run."""
    _here.runner, _here.out_base, _here.stop = runner, out_base, False
    queue = _queue(connection, queue_name)
    beat = max(1, int(requeue_after / 4))
    worker = _worker_class()(
        [queue],
        connection=connection,
        serializer=queue.serializer,
        name=f"{host_name()}.{os.getpid()}.{int(time.time())}",
        # Idle workers look for abandoned books this often, and block on the queue no
        # longer than a beat (rq waits worker_ttl - 15 s).
        maintenance_interval=max(1, int(requeue_after / 2)),
        worker_ttl=15 + beat,
        job_monitoring_interval=beat,
    )
    worker.requeue_after = requeue_after
    try:
        return bool(worker.work(burst=burst, logging_level="WARNING"))
    finally:
        _here.runner = None


def queue_status(connection: Any, queue_name: str = QUEUE_NAME) -> list[QueuedBook]:
    """Every book the queue knows: queued, running, finished and failed, with the host that
    ran it. Reading the started registry also requeues books found abandoned."""
    from rq.job import Job
    from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

    queue = _queue(connection, queue_name)
    found: list[QueuedBook] = []
    groups = (
        ("running", StartedJobRegistry(queue=queue).get_job_ids()),
        ("queued", queue.get_job_ids()),
        ("finished", FinishedJobRegistry(queue=queue).get_job_ids()),
        ("failed", FailedJobRegistry(queue=queue).get_job_ids()),
    )
    for state, ids in groups:
        jobs = Job.fetch_many(ids, connection=connection, serializer=queue.serializer)
        for job in jobs:
            if job is not None:
                found.append(_describe(state, job))
    return found


def _describe(state: str, job: Any) -> QueuedBook:
    book = (job.args[0] if job.args else {}).get("book", job.id)
    host = job.meta.get("host", "")
    detail = ""
    if state == "finished":
        result = job.return_value() or {}
        detail = result.get("out_dir", "")
        if result.get("exit") == ExitCode.CHAPTERS_FAILED:
            detail = f"some chapters failed; {detail}"
    elif state == "failed":
        latest = job.latest_result()
        lines = ((latest.exc_string if latest else "") or "").strip()
        detail = lines.splitlines()[-1] if lines else "failed"
    elif state == "running":
        detail = job.meta.get("out_dir", "")
    return QueuedBook(state, book, host, detail, job.retries_left or 0)
