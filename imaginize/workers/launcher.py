"""Starting, supervising and stopping worker processes.

The launcher starts N worker processes, forked from a multiprocessing forkserver that has
already imported the worker and its HTTP client (so a new worker is ready in milliseconds
instead of re-importing `openai` for a second or more), and hands each the parsed book. Then it
watches them and the manifest: it turns manifest changes into progress events, replaces a
worker that died while work remains (at most 4 x N times), stops everyone when a worker
reports a refused API key or a server pause longer than --max-wait, and on Ctrl-C asks its
workers to give their chapters back (SIGTERM), killing them on a second Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from imaginize.analysis.providers import ProviderKind
from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from imaginize.coordination.watch import ImageWatcher, ManifestWatcher
from imaginize.errors import ExitCode, ImaginizeError
from imaginize.events import ChapterFinished, Event, EventSink, Notice
from imaginize.guides.images import ImageStore, wanted_units
from imaginize.model import Book
from imaginize.pacing import open_pacer
from imaginize.pacing.pace import SharedPace, pace_digest
from imaginize.workers.autoscale import AutoScaler, process_rss
from imaginize.workers.messages import Fatal
from imaginize.workers.spec import WorkerSpec
from imaginize.workers.startup import worker_context
from imaginize.workers.worker import process_main

RESTARTS_PER_WORKER = 4
WATCH_INTERVAL = 0.1


class Interrupted(ImaginizeError):
    exit_code = ExitCode.INTERRUPTED


@dataclass
class _Worker:
    worker_id: str
    process: BaseProcess
    # What it tells this process (`messages.py`).
    messages: Connection
    # The end of the worker's lifeline this process holds open (see worker.serve).
    lifeline: Connection
    started: float = field(default_factory=time.monotonic)
    # Sent SIGTERM already (the supervising loop comes by every WATCH_INTERVAL).
    asked_to_stop: bool = False
    # Asked (SIGUSR1) to finish its chapter in hand and leave: --concurrent auto shrinking.
    retiring: bool = False
    # Its last word, if it sent one (read from `messages` with its notices).
    fatal: Fatal | None = None


class Launcher:
    def __init__(
        self,
        jobs: list[tuple[WorkerSpec, Book]],
        workers: int,
        sink: EventSink,
        *,
        watch_interval: float = WATCH_INTERVAL,
        autoscaler: AutoScaler | None = None,
    ) -> None:
        """`jobs`: the books to work on, each with its worker spec; one pool serves them all."""
        self.jobs = jobs
        self.count = autoscaler.target if autoscaler else workers
        self.autoscaler = autoscaler
        self.sink = self._observe if autoscaler else sink
        self._outer_sink = sink
        self._context = worker_context(spec.settings.provider for spec, _ in jobs)
        self.watch_interval = watch_interval
        self.stores = [
            ManifestStore(Path(spec.out_dir), lock_lifetime=spec.settings.claims.lock_lifetime)
            for spec, _ in jobs
        ]
        # Each book's image units when --images asks for them (None otherwise).
        self.image_stores = [
            ImageStore(Path(spec.out_dir), lock_lifetime=spec.settings.claims.lock_lifetime)
            if spec.settings.images is not None
            and spec.settings.provider.kind is ProviderKind.OPENAI
            else None
            for spec, _ in jobs
        ]
        self._workers: dict[str, _Worker] = {}
        self._next_id = 0
        self._restarts = 0
        self._interrupts = 0
        # What stopped the whole run (a refused key, a server's long pause), raised at the end.
        self._fatal: ImaginizeError | None = None
        self._paused_until = 0.0
        self._pacer: SharedPace | None = None
        self._no_more_starts = False
        self._last_memory_check = 0.0
        # Notices already passed on: N workers learning one fact about a server say it once.
        self._said: set[str] = set()

    def run(self) -> None:
        """Until the wanted chapters are settled, or Ctrl-C. Raises `Interrupted` after a
        Ctrl-C, `AuthenticationError` when a worker's key was refused and `ServerPaused` when
        the server asked for a wait longer than --max-wait."""
        label = len(self.jobs) > 1
        watchers: list[ManifestWatcher | ImageWatcher] = [
            ManifestWatcher(
                store, self.sink, spec.chapters, spec.settings.claims.max_attempts, label=label
            )
            for store, (spec, _) in zip(self.stores, self.jobs, strict=True)
        ]
        watchers += [
            ImageWatcher(store.manifest, self.sink, spec.settings.claims.max_attempts)
            for store, (spec, _) in zip(self.image_stores, self.jobs, strict=True)
            if store is not None
        ]
        previous = self._install_stop_signals()
        try:
            for _ in range(self.count):
                self._start()
            while self._workers:
                for watcher in watchers:
                    watcher.poll()
                for worker in self._workers.values():
                    self._read(worker)
                self._reap()
                if self.autoscaler and not self._interrupts:
                    self._scale()
                if self._interrupts >= 2:
                    self._signal_all(signal.SIGKILL)
                elif self._interrupts == 1:
                    self._signal_all(signal.SIGTERM)
                # Wakes at once when a worker exits or says something, else after the interval.
                waited: list[Any] = [w.process.sentinel for w in self._workers.values()]
                waited += [w.messages for w in self._workers.values() if not w.messages.closed]
                wait(waited, self.watch_interval)
            for watcher in watchers:
                watcher.poll()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._signal_all(signal.SIGKILL)
        if self._fatal is not None:
            raise self._fatal
        if self._interrupts:
            raise Interrupted("interrupted; finished chapters are kept, re-run to resume")

    def _observe(self, event: Event) -> None:
        assert self.autoscaler is not None
        if isinstance(event, ChapterFinished) and event.worker:
            queueing = self.autoscaler.queueing
            self.autoscaler.chapter_done(event.seconds)
            if self.autoscaler.queueing and not queueing:
                keep = self.autoscaler.ceiling
                self._outer_sink(
                    Notice(
                        f"the server gains nothing from more than {keep} request(s) at once "
                        f"(it answers them in turn): keeping {keep} worker(s)"
                    )
                )
        self._outer_sink(event)

    def _scale(self) -> None:
        """Bring the number of working (not retiring) workers to the autoscaler's target."""
        assert self.autoscaler is not None
        spec = self.jobs[0][0]
        if spec.settings.limits is not None:
            if self._pacer is None:
                self._pacer = open_pacer(
                    Path(spec.pace_dir or spec.out_dir),
                    spec.settings.limits,
                    redis_url=spec.settings.redis_url,
                    digest=pace_digest(
                        spec.settings.provider.base_url, spec.settings.provider.api_key
                    ),
                )
            paused = self._pacer.read().paused_until
            if paused > self._paused_until:
                self._paused_until = paused
                self.autoscaler.rate_limited()
        now = time.monotonic()
        if now - self._last_memory_check >= 1.0:
            self._last_memory_check = now
            total = sum(process_rss(w.process.pid) for w in self._workers.values())
            self.autoscaler.memory(total)
        active = [w for w in self._workers.values() if not w.retiring]
        target = self.autoscaler.target
        if len(active) < target and not self._no_more_starts and self._work_left():
            for _ in range(target - len(active)):
                self._start()
        for worker in active[target:]:
            worker.retiring = True
            _send(worker.process, signal.SIGUSR1)

    def _install_stop_signals(self) -> dict[int, Callable[..., object] | int | None]:
        """Ctrl-C, and a SIGTERM or SIGHUP (a closed terminal, a service manager) the same
        way: the first asks the workers to give their chapters back, the second kills them.
        Off the main thread (an embedding program) the caller keeps its own handlers."""

        def on_stop(signum: int, frame: FrameType | None) -> None:
            self._interrupts += 1

        if threading.current_thread() is not threading.main_thread():
            return {}
        return {
            signum: signal.signal(signum, on_stop)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }

    def _start(self) -> None:
        self._next_id += 1
        worker_id = f"w{self._next_id}"
        reader, writer = self._context.Pipe(duplex=False)
        # Never written to: the worker sees it close when this process ends, however it ends.
        lifeline, keep_open = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=process_main,
            args=(self.jobs, worker_id, writer, lifeline),
            name=f"imaginize-{worker_id}",
        )
        process.start()
        writer.close()
        lifeline.close()
        self._workers[worker_id] = _Worker(worker_id, process, reader, keep_open)

    def _reap(self) -> None:
        for worker_id, worker in list(self._workers.items()):
            code = worker.process.exitcode
            if code is None:
                continue
            del self._workers[worker_id]
            worker.lifeline.close()
            self._read(worker)
            worker.messages.close()
            worker.process.close()
            if code == ExitCode.OK or self._interrupts:
                continue
            fatal = worker.fatal
            ends_run = fatal.error() if fatal is not None else None
            if ends_run is not None:
                # A refused key, a server's long pause: its chapter is given back; the others'
                # go back too, and nobody waits.
                self._stop_all(ends_run)
                continue
            said = fatal.line(worker_id) if fatal is not None else ""
            self.sink(Notice(f"worker {worker_id} stopped ({_describe(code)}) {said}".strip()))
            if code in (ExitCode.BAD_INPUT, ExitCode.LOCKED):
                self._no_more_starts = True  # it would fail the same way again
                continue
            if self._restarts >= RESTARTS_PER_WORKER * self.count:
                self._no_more_starts = True
            elif self._work_left():
                self._restarts += 1
                if not self.autoscaler:  # the autoscaler refills to its target itself
                    self._start()

    def _stop_all(self, reason: ImaginizeError) -> None:
        """Stop every worker as a Ctrl-C would (chapters given back); `reason` ends the run."""
        self._fatal = self._fatal or reason
        self._interrupts = max(self._interrupts, 1)

    def _read(self, worker: _Worker) -> None:
        """What a worker sent: its notices are passed on (each text once per run: N workers
        learning one fact about a server say it once), its last word kept for when it ends."""
        if worker.messages.closed:
            return
        with suppress(EOFError, OSError):
            while worker.messages.poll():
                match worker.messages.recv():
                    case Notice(text) as notice if text not in self._said:
                        self._said.add(text)
                        self.sink(notice)
                    case Fatal() as fatal:
                        worker.fatal = fatal

    def _work_left(self) -> bool:
        for store, images, (spec, _) in zip(self.stores, self.image_stores, self.jobs, strict=True):
            chapters = store.read()
            if chapters is not None and not mf.settled(
                chapters, spec.settings.claims.max_attempts, spec.chapters
            ):
                return True
            units = images.read() if images is not None else None
            wanted = wanted_units(units, spec.chapters)
            if units is not None and not mf.settled(
                units, spec.settings.claims.max_attempts, wanted
            ):
                return True
        return False

    def _signal_all(self, signum: int) -> None:
        for worker in self._workers.values():
            if signum == signal.SIGTERM:
                if worker.asked_to_stop:
                    continue
                worker.asked_to_stop = True
            _send(worker.process, signum)
        if signum == signal.SIGKILL:
            for worker in self._workers.values():
                worker.process.join()


def _send(process: BaseProcess, signum: int) -> None:
    if process.exitcode is None and process.pid is not None:
        with suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
