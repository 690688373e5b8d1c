"""Timing instrumentation for benchmarks/speedup.py, without touching imaginize/.

    IMAGINIZE_BENCH_TIMINGS=t.jsonl python -m benchmarks.instrument cli BOOK [run options]

`cli` is `python -m imaginize` with the patches below. Workers are not separate
`python -m imaginize.workers.worker` programs any more: the launcher forks them from a
`multiprocessing` forkserver, a fresh interpreter that imports `forkserver.PRELOAD` and then
forks one child per worker, so patches made in the CLI process never reach them. `cli`
therefore appends `benchmarks.instrument_worker` to `forkserver.PRELOAD` and then starts the
forkserver itself before the CLI's imports, as the console entry does: the forkserver imports
it after `imaginize.workers.worker` and the analyzer's modules, that import patches the modules
already loaded there, and every worker forked afterwards inherits the patched functions.
(The forkserver ignores a preload module that fails to import, so speedup.py checks that
worker events did arrive.)

Every process appends its events to the timings file as JSON lines (one write per process,
at exit; a worker writes when `process_main` returns, since forkserver children leave with
`os._exit` and skip atexit): {"proc", "pid", "ev", "t" (time.monotonic(), comparable across
processes on one machine), "dur" (seconds, for spans), ...}.

Patched, by wrapping (the wrapped code runs unchanged):
- `ManifestStore.transact` and `.join`: one "txn" event each, `op` the caller (claim,
  publish, heartbeat, release, fail, join), `wait` for the lock, `dur` the whole transaction
  (lock wait + read + change + write + unlock);
- `Pacer._update` (the shared request-pacing file): one "pace" event each, `op` the caller
  (slot, pause);
- worker: `process_main` ("start": the forked child runs; "exit"), `make_analyzer`
  ("make_analyzer"), each `Analyzer.analyze` ("analyze": the HTTP round trip plus reply
  checks), each idle sleep of the worker loop ("idle_sleep"), the end of `run_jobs`
  ("worker_done");
- launcher: `warm_up` ("warm_up": starting the forkserver, from `main` here), each worker
  start ("spawn", with the worker id) and each worker seen gone ("reaped"); run_book's
  `read_book` and `_finish` (guides); "start"/"imported"/"exit" for the CLI process.

The CLI's "imported" event and each worker's "start" carry "imaginize": the `__file__` of the
imaginize package that process imported, so that speedup.py can check it measured the code
meant (--snapshot: the export's, not the working tree's).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

T_START = time.monotonic()  # as early as this process can see

from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from functools import wraps  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

TIMINGS_ENV = "IMAGINIZE_BENCH_TIMINGS"
WORKER_PATCH = "benchmarks.instrument_worker"
F = TypeVar("F", bound=Callable[..., Any])

_events: list[dict[str, Any]] = []
_proc = "?"


def record(ev: str, t: float, **fields: Any) -> None:
    _events.append({"proc": _proc, "pid": os.getpid(), "ev": ev, "t": t, **fields})


def _timed(ev: str, func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return func(*args, **kwargs)
        finally:
            record(ev, started, dur=time.monotonic() - started)

    return wrapper  # type: ignore[return-value]


def _patch_store() -> None:
    from imaginize.coordination.store import ManifestStore

    original_locked = ManifestStore.locked
    original_transact = ManifestStore.transact
    original_join = ManifestStore.join
    local = threading.local()  # a worker's heartbeat thread has transactions of its own

    def waits() -> list[float]:
        if not hasattr(local, "waits"):
            local.waits = []
        return local.waits

    @contextmanager
    def locked(self: ManifestStore) -> Iterator[None]:
        asked = time.monotonic()
        with original_locked(self):
            waits().append(time.monotonic() - asked)
            yield

    def transact(self: ManifestStore, change: Any) -> Any:
        op = sys._getframe(1).f_code.co_name
        started = time.monotonic()
        try:
            return original_transact(self, change)
        finally:
            wait = waits().pop() if waits() else 0.0
            record("txn", started, dur=time.monotonic() - started, wait=wait, op=op)

    def join(self: ManifestStore, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return original_join(self, **kwargs)
        finally:
            wait = waits().pop() if waits() else 0.0
            record("txn", started, dur=time.monotonic() - started, wait=wait, op="join")

    ManifestStore.locked = locked  # type: ignore[method-assign]
    ManifestStore.transact = transact  # type: ignore[method-assign]
    ManifestStore.join = join  # type: ignore[method-assign]
    _patch_pacer()


def _patch_pacer() -> None:
    """The request pacer's shared file (imaginize/pacing/pace.py, when present) is coordination
    too: its `_update` transactions are recorded as "pace" events (`op` the caller)."""
    try:
        from imaginize.pacing.pace import Pacer
    except ImportError:
        return
    original = Pacer._update

    def update(self: Pacer, change: Any) -> Any:
        op = sys._getframe(1).f_code.co_name
        started = time.monotonic()
        try:
            return original(self, change)
        finally:
            record("pace", started, dur=time.monotonic() - started, op=op)

    Pacer._update = update  # type: ignore[method-assign]


def _patch_worker() -> None:
    """In the forkserver (through `benchmarks.instrument_worker`): the worker's functions."""
    from imaginize.workers import units, worker

    original_make = units.make_analyzer

    def make_analyzer(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        analyzer = original_make(*args, **kwargs)
        record("make_analyzer", started, dur=time.monotonic() - started)
        analyzer.analyze = _timed("analyze", analyzer.analyze)
        return analyzer

    units.make_analyzer = make_analyzer
    original_run = worker.run_jobs

    def run_jobs(*args: Any, **kwargs: Any) -> int:
        kwargs.setdefault("sleep", _timed("idle_sleep", time.sleep))
        try:
            return original_run(*args, **kwargs)
        finally:
            record("worker_done", time.monotonic())

    worker.run_jobs = run_jobs
    original_main = worker.process_main

    def process_main(jobs: Any, worker_id: str, errors: Any, *rest: Any) -> None:
        global _proc
        _events.clear()  # nothing the forkserver recorded belongs to this worker
        _proc = worker_id
        record("start", time.monotonic(), imaginize=_imaginize_file())
        code: object = 1
        try:
            original_main(jobs, worker_id, errors, *rest)
            code = 0
        except SystemExit as exc:
            code = exc.code
            raise
        finally:
            record("exit", time.monotonic(), code=code)
            _dump()

    # The launcher pickles its target by name (imaginize.workers.worker.process_main); the child
    # looks that name up in this module, so it finds the wrapper.
    worker.process_main = process_main


def _patch_launcher() -> None:
    from imaginize import run
    from imaginize.workers import forkserver, launcher

    run.read_book = _timed("read_book", run.read_book)
    run._finish = _timed("finish", run._finish)  # type: ignore[attr-defined]
    # Workers are forked from a forkserver that imports these modules; this one patches them
    # there (see the module docstring). In place: forkserver.context() reads the list.
    if WORKER_PATCH not in forkserver.PRELOAD:
        forkserver.PRELOAD.append(WORKER_PATCH)
    original_start = launcher.Launcher._start
    original_reap = launcher.Launcher._reap

    def start(self: launcher.Launcher) -> None:
        started = time.monotonic()
        original_start(self)
        record("spawn", started, worker=f"w{self._next_id}", dur=time.monotonic() - started)

    def reap(self: launcher.Launcher) -> None:
        before = set(self._workers)
        original_reap(self)
        now = time.monotonic()
        for worker_id in before - set(self._workers):
            record("reaped", now, worker=worker_id)

    launcher.Launcher._start = start  # type: ignore[method-assign]
    launcher.Launcher._reap = reap  # type: ignore[method-assign]


def _imaginize_file() -> str | None:
    module = sys.modules.get("imaginize")
    return getattr(module, "__file__", None)


def _dump() -> None:
    path = os.environ.get(TIMINGS_ENV)
    if not path:
        return
    data = "".join(json.dumps(event) + "\n" for event in _events)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data.encode("utf-8"))  # one append: lines of processes never interleave
    finally:
        os.close(fd)


def install_in_forkserver() -> None:
    """What importing `benchmarks.instrument_worker` does in the forkserver."""
    _patch_store()
    _patch_worker()


def main(argv: list[str]) -> int:
    global _proc
    if not argv or argv[0] != "cli":
        print(__doc__, file=sys.stderr)
        return 2
    rest = argv[1:]
    _proc = "cli"
    record("start", T_START)
    code = 1
    try:
        # The run starts the forkserver once the CLI has resolved the provider
        # (`workers/startup.py`): with this patch appended to its preload, and timed.
        from imaginize.workers import forkserver

        if WORKER_PATCH not in forkserver.PRELOAD:
            forkserver.PRELOAD.append(WORKER_PATCH)
        forkserver.warm_up = _timed("warm_up", forkserver.warm_up)
        from imaginize.cli.main import main as entry

        record("imported", time.monotonic(), imaginize=_imaginize_file())
        _patch_store()
        _patch_launcher()
        code = entry(rest)
    finally:
        record("exit", time.monotonic(), code=code)
        _dump()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
