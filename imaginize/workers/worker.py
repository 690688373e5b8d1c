"""The worker loop: claim the next unit, work on it, publish it, repeat until every wanted
unit is settled or the worker is told to stop.

A unit is a chapter or, with --images, a scene's image (`units.py` and `image_worker.py`,
two implementations of one interface). A worker is normally an OS process forked from the
launcher's forkserver (`process_main`), which receives its books as (spec, Book) pairs
pickled, so it neither imports nor parses anything again. `python -m imaginize.workers.worker
ID` with the spec as JSON on stdin is the stand-alone form (it reads the book itself);
`run_worker` runs one in the calling process (in-process runs, tests). It stays until every
unit it was asked for is settled, polling while other processes still hold claims, so that if
one of them dies this worker takes its unit over (at once when the dead owner is on this
host, else after the lease).

Stopping: signal handlers and the lifeline thread only set a `StopFlag`; the loop checks it
before each claim, and the waits poll it (`within` gives the unit in hand back at once on
SIGTERM).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from imaginize.analysis.base import Analyzer
from imaginize.cancel import Token
from imaginize.coordination import manifest as mf
from imaginize.coordination.claims import Abandoned, Heartbeat, StopFlag, within
from imaginize.errors import AuthenticationError, ExitCode, ServerPaused, ServerUnreachable
from imaginize.events import Event, EventSink, Notice, ignore
from imaginize.model import Book
from imaginize.workers.messages import Fatal, Message
from imaginize.workers.spec import WorkerSpec
from imaginize.workers.units import Claimed, Settled, UnitKind, Wait, kinds_for, next_unit, watched


def run_worker(
    spec: WorkerSpec,
    worker_id: str,
    *,
    sink: EventSink = ignore,
    stop: StopFlag | None = None,
    book: Book | None = None,
    analyzer: Analyzer | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Work on one book until its wanted units are settled or `stop` is requested; returns
    how many units this worker published."""
    return run_jobs([(spec, book)], worker_id, sink=sink, stop=stop, analyzer=analyzer, sleep=sleep)


def run_jobs(
    jobs: list[tuple[WorkerSpec, Book | None]],
    worker_id: str,
    *,
    sink: EventSink = ignore,
    stop: StopFlag | None = None,
    analyzer: Analyzer | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Work on several books, one unit at a time, in book order: a worker takes the first
    claimable unit of the first book that has one, and leaves when every book is settled."""
    stop = stop or StopFlag()
    kinds = [kind for spec, book in jobs for kind in kinds_for(spec, book, analyzer, sink)]
    owner = mf.owner_id(worker_id)
    published = 0
    while not stop.requested:
        match next_unit(kinds, owner, stop):
            case Claimed(kind, claim):
                published += perform(kind, claim, worker_id, sink, stop)
            case Wait(seconds):
                nap(seconds, watched(kinds), sleep, stop)
            case Settled():
                break
    return published


def perform(
    kind: UnitKind, claim: mf.Claim, worker_id: str, sink: EventSink, stop: StopFlag
) -> bool:
    """Work on one claimed unit, its claim kept alive and its deadline kept, then publish
    it. Whether it was published (not failed, given back, or taken over meanwhile)."""
    settings, started = kind.spec.settings, time.monotonic()
    try:
        work = kind.start(claim, worker_id)
        # A Token: giving the unit up (deadline, stop, claim lost) also shuts its request's
        # connection and gives its pacer slot back at once (see cancel).
        lost = Token()
        with Heartbeat(kind.beats, claim.number, claim.token, settings.claims.heartbeat, lost):
            name = f"{kind.name}-{claim.number}"
            result = within(settings.chapter_timeout, work, name, cancel=lost, stop=stop)
    except Abandoned:  # told to stop at once: given back, the attempt not counted
        kind.store.release(claim.number, claim.token)
        return False
    except (AuthenticationError, ServerPaused, KeyboardInterrupt):
        # Not the unit's fault (nor a library caller's Ctrl-C): given back, not counted.
        kind.store.release(claim.number, claim.token)
        raise
    except ServerUnreachable as away:
        # Nor is a server that went away: the pace holds everyone until it answers again.
        kind.store.release(claim.number, claim.token)
        sink(Notice(f"{away}; every worker waits for it, no attempt spent"))
        return False
    except Exception as exc:  # the unit failed; a bug met on it must not end the worker
        kind.fail(claim, exc)
        return False
    finally:
        for message in kind.notices():
            sink(Notice(message))
    return kind.publish(claim, result, worker_id, started)


# How often an idle worker checks whether a manifest was rewritten: a stat, no read.
CHANGE_CHECK = 0.02


def nap(
    seconds: float, manifests: list[Path], sleep: Callable[[float], None], stop: StopFlag
) -> None:
    """Sleep `seconds`, waking early once any of `manifests` is rewritten (a publish, a
    release, a reset): the last chapter's publish ends every idle worker's wait at once, and a
    chapter given back is taken over at once, not at the next poll. A stop ends it too."""
    before = [_stamp(path) for path in manifests]
    # Counted in naps, not read off a clock, so that a test's instant `sleep` still ends.
    naps = max(1, math.ceil(seconds / CHANGE_CHECK))
    for _ in range(naps):
        sleep(seconds / naps)
        if stop.requested or [_stamp(path) for path in manifests] != before:
            return


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a manifest's file is written: a rename (a new inode), an append (a
    new size)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


# --- the worker process -------------------------------------------------------------------


def serve(
    jobs: list[tuple[WorkerSpec, Book | None]],
    worker_id: str,
    *,
    report: Callable[[Message], None] | None = None,
    lifeline: Connection | None = None,
) -> int:
    """A worker process's whole life: signals, the loop, and an exit code. What only it
    knows goes to `report` (the launcher's pipe) as messages, or to stderr as lines:
    notices (a server's context size, a claim taken over) and its `Fatal` last word; progress
    reaches the launcher through the manifest. `lifeline`: a pipe whose other end only the
    launcher holds; when it closes, the launcher is gone."""
    stop = StopFlag()
    say = report or _to_stderr(worker_id)

    def tell(event: Event) -> None:
        if isinstance(event, Notice):
            say(event)

    # The launcher owns Ctrl-C: it asks workers to stop with SIGTERM, and kills on a second one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.stop_now())
    # Fewer workers wanted (--concurrent auto): finish the unit in hand, then leave.
    signal.signal(signal.SIGUSR1, lambda signum, frame: stop.finish_and_leave())
    if lifeline is not None:
        threading.Thread(
            target=_stop_when_closed, args=(lifeline, stop), name="lifeline", daemon=True
        ).start()
    try:
        run_jobs(jobs, worker_id, sink=tell, stop=stop)
    except Exception as exc:  # an ImaginizeError (a refused key, a bad book) or a bug
        fatal = Fatal.of(exc)
        say(fatal)
        return fatal.exit_code
    return ExitCode.INTERRUPTED if stop.at_once else ExitCode.OK


def _to_stderr(worker_id: str) -> Callable[[Message], None]:
    def say(message: Message) -> None:
        match message:
            case Notice(text):
                print(f"imaginize: {text}", file=sys.stderr, flush=True)
            case Fatal():
                print(message.line(worker_id), file=sys.stderr, flush=True)

    return say


def _stop_when_closed(lifeline: Connection, stop: StopFlag) -> None:
    """Stop this worker as a SIGTERM from its launcher would (claims given back) once the
    launcher has died: killed with -9, it can no longer stop the workers it started, which
    would otherwise go on working, and spending, with nobody watching."""
    try:
        while not lifeline.poll(None):
            pass
    except OSError:
        pass
    stop.stop_now()


def process_main(
    jobs: list[tuple[WorkerSpec, Book | None]],
    worker_id: str,
    messages: Connection,
    lifeline: Connection | None = None,
) -> None:
    """Entry of a worker started by the launcher (forked from its preloaded server)."""
    # Its own session: a terminal's Ctrl-C reaches the launcher only, which decides how the
    # workers stop.
    os.setsid()
    code = serve(jobs, worker_id, report=messages.send, lifeline=lifeline)
    messages.close()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """`python -m imaginize.workers.worker ID`, spec as JSON on stdin: a stand-alone worker."""
    args = sys.argv[1:] if argv is None else argv
    return serve([(WorkerSpec.from_json(sys.stdin.read()), None)], args[0] if args else "w1")


if __name__ == "__main__":
    sys.exit(main())
