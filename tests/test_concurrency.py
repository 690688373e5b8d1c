"""Concurrency claims, tested with real OS processes that are started, raced and killed.

What each test shows (see manifest-format.md for the rules they check):

- stress: 8 `python -m imaginize.workers.worker` processes released at once do a 200-chapter book,
  every chapter exactly once, tokens unique and growing, nothing left behind;
- chaos: workers are kill -9'd at random moments and while they hold the manifest lock, and
  replaced; the manifest always parses, no chapter is lost or published twice, and a lock
  left by a dead pid is broken at once;
- two CLI runs started together on one book share it: one request per chapter in all;
- Ctrl-C: the launcher exits 130 within seconds, gives the chapters in hand back uncounted,
  keeps the finished ones, and a re-run does only the rest;
- kill -9 of a worker holding a claim under a 10-minute lease: a live worker on this host
  takes the chapter over at once (dead pid), not after the lease;
- the 10-minute defaults of the lease and the lock lifetime.

How processes are started. Python needs about a second of CPU to import a worker (openai's
types dominate), so:
- stress workers run `imaginize.workers.worker.main` behind a file barrier: each imports, says it is
  ready, and waits for a "go" file; the test creates it once all 8 are ready, so the claims
  race for real instead of trickling in one import at a time;
- chaos workers (dozens of restarts) are forked from a parent that has imported the worker
  and parsed the book (`_zygote_main`); each is still its own OS process running
  `imaginize.workers.worker.main`, killed with SIGKILL; the fresh run that finishes the book is
  `run_book` (a launcher and its worker processes) with the journal on;
- the CLI tests run `python -m imaginize` exactly as a user would.

The fake server (tests/fake_openai.py) runs as its own process; the responders below make
it slow, or hang once, where a test needs chapters to stay in progress.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import json
import math
import os
import queue
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, NoReturn, TypeVar

import pytest
from click.testing import CliRunner

from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.cli import main as cli_module
from imaginize.coordination import manifest as mf
from imaginize.coordination.locking import DEFAULT_LOCK_LIFETIME
from imaginize.coordination.store import JOURNAL_NAME, LOCK_NAME, MANIFEST_NAME, ManifestStore
from imaginize.events import RunFinished
from imaginize.guides.merge import CHAPTERS, CONTENTS, ELEMENTS
from imaginize.guides.results import CHAPTERS_DIR, read_result, result_path
from imaginize.model import Book
from imaginize.pacing.pace import PACE_LOCK_NAME, RATE_NAME
from imaginize.reading.epub import book_fingerprint, read_book
from imaginize.run import RunOptions
from imaginize.settings import DEFAULT_HEARTBEAT, ClaimPolicy, RunSettings
from imaginize.workers.spec import WorkerSpec
from tests.epubs import build_epub
from tests.fake_openai import FakeOpenAIProcess, prompt_text
from tests.replies import answer

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# Subprocesses see the repository (for tests.* responders) and none of the caller's API
# settings, which would otherwise pick the provider or the pace.
ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(("OPENAI_", "OPENROUTER_", "IMAGINIZE_"))
}
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))

# The CLI paces requests by default (paid tier: batches of 5, 2 s apart); these tests are
# about claims, not pacing, so the pace is opened up.
UNPACED = ["--batch-size", "1000", "--batch-delay", "0"]
_CHAPTER_IN_PROMPT = re.compile(r'^Chapter (\d+) of "', re.M)


# --- responders for the fake server process ------------------------------------------------

SLOW_REPLY = 2.0
BRISK_REPLY = 0.05
_hung: set[int] = set()
_hung_lock = threading.Lock()


def chapter_of(body: Mapping[str, Any] | None) -> int | None:
    match = _CHAPTER_IN_PROMPT.search(prompt_text(body))
    return int(match.group(1)) if match else None


def answer_slowly(body: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**answer(body), "delay": SLOW_REPLY}


def answer_briskly(body: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**answer(body), "delay": BRISK_REPLY}


def answer_in_half_a_second(body: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**answer(body), "delay": 0.5}


def hang_on_chapter_one_once(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The first request for chapter 1 gets no answer for a minute; every other at once."""
    number = chapter_of(body)
    with _hung_lock:
        first = number == 1 and number not in _hung
        _hung.add(number or 0)
    return {**answer(body), "delay": 60.0} if first else answer(body)


def server(tmp_path: Path, responder: str, name: str = "server") -> FakeOpenAIProcess:
    return FakeOpenAIProcess({"responder": responder}, workdir=tmp_path / name)


def chat_chapters(requests: list[dict[str, Any]]) -> collections.Counter[int]:
    """How many successful chat requests each chapter got."""
    return collections.Counter(
        number
        for r in requests
        if r["endpoint"] == "chat" and r["status"] == 200
        for number in [chapter_of(r["body"])]
        if number is not None
    )


# --- books, manifests, journals -------------------------------------------------------------


def make_book(path: Path, count: int) -> Book:
    chapters = [
        (
            f"Chapter {n}",
            f"<p>Wren walked orchard row {n} while the lanterns swung in the wind. "
            f"She counted {n} windfalls under the old pear tree before the bell rang.</p>",
        )
        for n in range(1, count + 1)
    ]
    build_epub(path, chapters, title="Stress Orchard")
    book = read_book(path)
    assert [c.number for c in book.chapters] == list(range(1, count + 1))
    return book


def join(out: Path, book: Book) -> ManifestStore:
    """Create the manifest the way `run_book` does before it starts workers."""
    store = ManifestStore(out)
    store.join(
        book_path=str(book.path.resolve()),
        sha256=book_fingerprint(book.path),
        title=book.title,
        chapters=[(c.number, c.title) for c in book.chapters],
    )
    return store


def read_manifest(out: Path) -> mf.Manifest:
    current = ManifestStore(out).read()
    assert current is not None
    return current


@dataclass(frozen=True)
class Published:
    number: int
    token: int
    owner: str


def read_journal(path: Path) -> list[Published]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Published(int(n), int(t), o) for n, t, o in (line.split(" ", 2) for line in lines)]


def owner_pid(owner: str) -> int:
    return int(owner.rsplit(":", 2)[1])


def check_results(out: Path, book: Book) -> None:
    """Every chapter has a result file that parses and belongs to it."""
    for chapter in book.chapters:
        result = read_result(result_path(out, chapter.number))
        assert (result.chapter, result.title) == (chapter.number, chapter.title)
        assert result.scenes, chapter.number
        for scene in result.scenes:
            assert scene.quote in chapter.text


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


def provider(url: str) -> ProviderConfig:
    return ProviderConfig(ProviderKind.OPENAI, "fake", api_key="test", base_url=url)


# --- processes --------------------------------------------------------------------------------


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def ancestors(pid: int) -> list[int]:
    found = []
    parent = parent_of(pid)
    while parent and parent > 1:
        found.append(parent)
        parent = parent_of(parent)
    return found


def descendants(pid: int) -> list[int]:
    """Children, grandchildren...: a launcher's workers hang off its forkserver."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Processes:
    """Every process a test starts; all killed (with their children: the launcher's workers
    live in their own sessions) when the test ends, whatever happened."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []
        self.files: list[IO[bytes]] = []

    def start(
        self, args: list[str], name: str, stdin: bytes | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed in close())
        self.files.append(log)
        process = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            # The request pace is kept per server under the cache folder: one per test.
            env={**ENV, "XDG_CACHE_HOME": str(self.tmp_path / "cache")},
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if stdin is not None:
            assert process.stdin is not None
            process.stdin.write(stdin)
            process.stdin.close()
        self.started.append(process)
        return process

    def output(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                family = descendants(process.pid)
                _kill(process.pid)
                for pid in family:
                    _kill(pid)
            process.wait(timeout=10)
        for log in self.files:
            log.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()


def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{process.args} still running after {timeout:g}s") from None


def imaginize_cli(book: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "imaginize", str(book), *options, *UNPACED]


# Runs the worker's real entry point once a "go" file appears: the import (about a second of
# CPU) happens before the barrier, so all workers reach their first claim together.
BARRIER_WORKER = """
import os, sys, time
import imaginize.analysis.openai.chat, imaginize.workers.worker
worker_id, ready, go = sys.argv[1:4]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
sys.exit(imaginize.workers.worker.main([worker_id]))
"""


def start_behind_barrier(
    processes: Processes, spec: WorkerSpec, ids: list[str], barrier: Path
) -> list[subprocess.Popen[bytes]]:
    barrier.mkdir()
    workers = [
        processes.start(
            [
                sys.executable,
                "-c",
                BARRIER_WORKER,
                worker_id,
                str(barrier / worker_id),
                str(barrier / "go"),
            ],
            f"worker-{worker_id}",
            stdin=spec.to_json().encode(),
        )
        for worker_id in ids
    ]
    wait_for(
        lambda: (
            all((barrier / w).exists() for w in ids) or any(p.poll() is not None for p in workers)
        ),
        60,
        "the workers to import",
    )
    assert all(p.poll() is None for p in workers), "a worker died before the barrier"
    (barrier / "go").touch()
    return workers


# --- the fork server for the chaos test --------------------------------------------------------


def _zygote_main(book_path: str) -> None:
    """Fork server, run as its own process: imports the worker and parses the book once, then
    forks a worker process per line "worker_id spec_path" on stdin, answering "started
    worker_id pid"; it reaps its children at once and reports "exit pid code". Stdin closed:
    children killed."""
    import imaginize.analysis.openai.chat  # noqa: F401 (paid for once, before any fork)
    from imaginize.workers import units, worker

    units.read_book = functools.cache(units.read_book)  # type: ignore[assignment]
    units.read_book(book_path)

    def say(line: str) -> None:
        os.write(1, (line + "\n").encode())

    children: set[int] = set()
    pending = b""
    say("ready")
    try:
        while True:
            readable, _, _ = select.select([0], [], [], 0.002)
            if readable:
                data = os.read(0, 4096)
                if not data:
                    return
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    worker_id, spec_path = line.decode().split(" ", 1)
                    pid = os.fork()
                    if pid == 0:
                        _zygote_child(worker, worker_id, spec_path)
                    children.add(pid)
                    say(f"started {worker_id} {pid}")
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                children.discard(pid)
                say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")
    finally:
        for pid in children:
            _kill(pid)
        for pid in children:
            os.waitpid(pid, 0)


def _zygote_child(worker: ModuleType, worker_id: str, spec_path: str) -> NoReturn:
    code = 70
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        sys.stdin = open(spec_path, encoding="utf-8")  # noqa: SIM115 (the process ends below)
        code = worker.main([worker_id])
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


class Zygote:
    def __init__(self, processes: Processes, book_path: Path) -> None:
        log = open(processes.tmp_path / "zygote.log", "wb")  # noqa: SIM115 (closed with processes)
        processes.files.append(log)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from tests.test_concurrency import _zygote_main; "
                "_zygote_main(sys.argv[1])",
                str(book_path),
            ],
            cwd=REPO_ROOT,
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        processes.started.append(self.process)
        self.exits: dict[int, int] = {}
        self._started: queue.Queue[tuple[str, int]] = queue.Queue()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(60):
            raise AssertionError("the fork server did not start")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            words = raw.decode().split()
            if words == ["ready"]:
                self._ready.set()
            elif words[0] == "started":
                self._started.put((words[1], int(words[2])))
            elif words[0] == "exit":
                self.exits[int(words[1])] = int(words[2])

    def spawn(self, worker_id: str, spec_path: Path) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{worker_id} {spec_path}\n".encode())
        self.process.stdin.flush()
        started_id, pid = self._started.get(timeout=30)
        assert started_id == worker_id
        return pid

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)  # every "exit" line read


# === 1. stress ===================================================================================


@pytest.mark.slow
@pytest.mark.timeout(300)  # 8 processes on 2 cores
def test_stress_eight_workers_two_hundred_chapters(tmp_path: Path, processes: Processes) -> None:
    book = make_book(tmp_path / "book.epub", 200)
    out = tmp_path / "out"
    join(out, book)
    journal = tmp_path / "journal.txt"
    ids = [f"w{n}" for n in range(1, 9)]
    with server(tmp_path, "tests.replies:answer") as fake:
        settings = RunSettings(provider(fake.url), claims=ClaimPolicy(poll=0.05))
        spec = WorkerSpec(str(book.path), str(out), settings, journal=str(journal))
        workers = start_behind_barrier(processes, spec, ids, tmp_path / "barrier")
        codes = [wait_exit(p, 120) for p in workers]
        requests = fake.requests()
    assert codes == [0] * 8, [processes.output(f"worker-{w}") for w in ids]

    published = read_journal(journal)
    numbers = collections.Counter(p.number for p in published)
    assert numbers == {n: 1 for n in range(1, 201)}
    # Exactly 200 claims were made (none failed or was taken over), so the tokens are 1..200.
    assert sorted(p.token for p in published) == list(range(1, 201))
    by_owner: dict[str, list[int]] = collections.defaultdict(list)
    for p in published:
        by_owner[p.owner].append(p.token)
    for tokens in by_owner.values():
        assert tokens == sorted(tokens), "a worker's claims must take growing tokens"
    assert len(by_owner) >= 2, "the workers did not share the book"

    manifest = read_manifest(out)
    assert manifest.next_token == 201
    journal_token = {p.number: p.token for p in published}
    for entry in manifest.chapters:
        assert entry.status is mf.Status.COMPLETED, entry
        assert (entry.token, entry.attempts, entry.owner) == (journal_token[entry.number], 1, None)
    check_results(out, book)
    assert chat_chapters(requests) == {n: 1 for n in range(1, 201)}

    # Nothing staged, half-written or locked is left behind.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST_NAME, JOURNAL_NAME, CHAPTERS_DIR]
    )
    names = sorted(p.name for p in (out / CHAPTERS_DIR).iterdir())
    assert names == [f"{n:03d}.json" for n in range(1, 201)]


# === 2. chaos ====================================================================================

CHAOS_CHAPTERS = 80
CHAOS_WORKERS = 4
CHAOS_KILLS = 30
CHAOS_LEASE = 1.5
# The backstop for a lock file that names no one (a process killed between creating the lock
# file and writing its pid into it): broken by age. Dead pids must not need it.
CHAOS_LOCK_LIFETIME = 3.0
DEAD_LOCK_BOUND = 2.0
GAP_BOUND = 5.0


@dataclass
class Observations:
    reads: int = 0
    errors: list[str] = field(default_factory=list)
    changes: list[float] = field(default_factory=list)
    all_done_at: float | None = None
    # How long each lock file naming a killed pid (or no pid) stayed before it was broken.
    dead_locks: list[float] = field(default_factory=list)
    recordless_locks: list[float] = field(default_factory=list)


class Observer:
    """Reads the manifest and the lock file over and over from a thread, without the lock,
    as `imaginize status` does: every read must parse; times every change of the manifest
    and how long each lock left by a killed process survives."""

    def __init__(self, out: Path, killed: set[int]) -> None:
        self.out = out
        self.killed = killed
        self.seen = Observations()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # One store reads on from where it stopped (as a worker does), a new one reads the
        # snapshot and its journal afresh (as `imaginize status` does); turn about.
        kept = ManifestStore(self.out)
        last = None
        lock: tuple[int, str, float] | None = None  # inode, content, first seen
        while not self._stop.is_set():
            now = time.monotonic()
            lock = self._watch_lock(lock, now)
            try:
                store = kept if self.seen.reads % 2 else ManifestStore(self.out)
                manifest = store.read()
                assert manifest is not None
            except Exception as exc:
                self.seen.errors.append(repr(exc))
                continue
            self.seen.reads += 1
            if manifest != last:
                last = manifest
                self.seen.changes.append(now)
                done = all(e.status is mf.Status.COMPLETED for e in manifest.chapters)
                if done and self.seen.all_done_at is None:
                    self.seen.all_done_at = now
            time.sleep(0.001)

    def _watch_lock(
        self, lock: tuple[int, str, float] | None, now: float
    ) -> tuple[int, str, float] | None:
        try:
            inode = os.stat(self.out / LOCK_NAME).st_ino
            content = (self.out / LOCK_NAME).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            inode, content = -1, ""
        if lock is not None and (inode, content) == lock[:2]:
            return lock
        if lock is not None:  # the lock we were timing is gone or replaced
            if lock[1] == "":
                self.seen.recordless_locks.append(now - lock[2])
            else:
                self.seen.dead_locks.append(now - lock[2])
        pid = content.split("\n", 1)[0]
        if inode != -1 and (content == "" or (pid.isdigit() and int(pid) in self.killed)):
            return (inode, content, now)
        return None


# `run_book` with the journal on (the CLI has no option for it): a launcher and its workers.
FRESH_RUN = """
import json, sys
from pathlib import Path
from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.run import RunOptions, run_book
book, out, url, journal, settings = sys.argv[1:6]
config = ProviderConfig(ProviderKind.OPENAI, "fake", api_key="test", base_url=url)
options = RunOptions.of(
    out_dir=Path(out), provider=config, concurrent=2, journal=Path(journal),
    **json.loads(settings),
)
finished = run_book(book, options)
sys.exit(1 if finished.failures or finished.unfinished else 0)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)  # 8 processes killed and restarted
def test_chaos_kill_9_workers_at_random_moments(tmp_path: Path, processes: Processes) -> None:
    book = make_book(tmp_path / "book.epub", CHAOS_CHAPTERS)
    out = tmp_path / "out"
    join(out, book)
    journal = tmp_path / "journal.txt"
    killed: set[int] = set()
    rng = random.Random(os.environ.get("CHAOS_SEED", time.time_ns()))
    with server(tmp_path, "tests.test_concurrency:answer_briskly") as fake:
        claims = ClaimPolicy(
            lease=CHAOS_LEASE,
            heartbeat=0.25,
            lock_lifetime=CHAOS_LOCK_LIFETIME,
            poll=0.05,
            # Kills that land on claims keep hitting the first pending chapter; without a
            # high cap it would be abandoned as "a chapter that kills its workers".
            max_attempts=1000,
        )
        settings = RunSettings(provider(fake.url), claims=claims)
        spec = WorkerSpec(str(book.path), str(out), settings, journal=str(journal))
        spec_path = tmp_path / "spec.json"
        spec_path.write_text(spec.to_json(), encoding="utf-8")
        zygote = Zygote(processes, book.path)
        live: dict[int, str] = {}
        serial = 0

        def start_worker() -> None:
            nonlocal serial
            serial += 1
            worker_id = f"w{serial}"
            live[zygote.spawn(worker_id, spec_path)] = worker_id

        kills = kills_holding_lock = 0
        with Observer(out, killed) as observer:
            for _ in range(CHAOS_WORKERS):
                start_worker()
            chaos_started = time.monotonic()
            chaos_ends = chaos_started + 6.0
            while time.monotonic() < chaos_ends and kills < CHAOS_KILLS:
                time.sleep(rng.uniform(0.02, 0.25))  # a random moment
                current = ManifestStore(out).read()
                assert current is not None
                if all(e.status is mf.Status.COMPLETED for e in current.chapters):
                    break
                frozen = _freeze_lock_holder(out, live) if rng.random() < 0.5 else None
                if frozen is not None:
                    victim, inside = frozen
                else:
                    # A worker in the middle of a chapter: one still starting has nothing
                    # to lose, and killing those only would starve the book.
                    busy = [
                        pid
                        for e in current.chapters
                        if e.status is mf.Status.IN_PROGRESS and e.owner
                        for pid in [owner_pid(e.owner)]
                        if pid in live
                    ]
                    if not busy:
                        continue
                    victim, inside = rng.choice(busy), False
                killed.add(victim)
                _kill(victim)
                kills += 1
                kills_holding_lock += inside
                del live[victim]
                start_worker()
            survivors = dict(live)
            chaos_took = time.monotonic() - chaos_started
            # A fresh run (launcher and worker processes, as the CLI's, plus the journal)
            # joins the survivors and finishes the book.
            fresh = processes.start(
                [
                    sys.executable,
                    "-c",
                    FRESH_RUN,
                    str(book.path),
                    str(out),
                    fake.url,
                    str(journal),
                    json.dumps(
                        {
                            "lease": CHAOS_LEASE,
                            "heartbeat": claims.heartbeat,
                            "lock_lifetime": CHAOS_LOCK_LIFETIME,
                            "poll": claims.poll,
                            "max_attempts": claims.max_attempts,
                        }
                    ),
                ],
                "fresh-run",
            )
            assert wait_exit(fresh, 60) == 0, processes.output("fresh-run")
            wait_for(lambda: all(p in zygote.exits for p in survivors), 30, "the survivors")
            finish_took = time.monotonic() - chaos_started - chaos_took
        zygote.close()

    seen = observer.seen
    changes = [t for t in seen.changes if t <= (seen.all_done_at or math.inf)]
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    print(  # shown when the test fails
        f"chaos: {chaos_took:.1f}s, then {finish_took:.1f}s to finish; {kills} kills "
        f"({kills_holding_lock} holding the lock), {len(survivors)} survivors; "
        f"{seen.reads} reads, {len(seen.changes)} changes, "
        f"longest gap {max(gaps, default=0):.2f}s; dead locks {sorted(seen.dead_locks)[-3:]}, "
        f"recordless {seen.recordless_locks}"
    )
    assert kills >= 10, f"only {kills} kills before the book was done"
    assert kills_holding_lock >= 1, "no kill landed inside a critical section"
    assert {zygote.exits[p] for p in survivors} == {0}
    for pid in killed:
        assert zygote.exits[pid] == -signal.SIGKILL

    # The manifest parsed at every read, and the book is done.
    assert seen.errors == [] and seen.reads > 100
    manifest = read_manifest(out)
    assert all(e.status is mf.Status.COMPLETED for e in manifest.chapters)
    check_results(out, book)

    # None published twice. A worker killed between publishing and writing its journal line
    # leaves none, and a result published but not yet recorded is completed by the next claim.
    published = read_journal(journal)
    numbers = collections.Counter(p.number for p in published)
    assert max(numbers.values()) == 1, [n for n, c in numbers.items() if c > 1]
    assert len({p.token for p in published}) == len(published)
    for p in published:
        assert manifest.entry(p.number).token == p.token
    assert CHAOS_CHAPTERS - len(published) <= kills

    # Locks left by killed workers went at once; progress never stalled while work remained.
    assert max(seen.dead_locks, default=0.0) < DEAD_LOCK_BOUND, seen.dead_locks
    assert max(seen.recordless_locks, default=0.0) < CHAOS_LOCK_LIFETIME + 1.0
    assert seen.all_done_at is not None
    assert max(gaps) < GAP_BOUND, max(gaps)

    # What killed writers may leave: half-written temp files (swept once a minute old),
    # results staged for a claim that never got published, filelock's break/restore files.
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    # The pace's kernel lock file stays (flock locks an inode, which must not be unlinked).
    expected_top = {MANIFEST_NAME, JOURNAL_NAME, CONTENTS, CHAPTERS, ELEMENTS}
    expected_top |= {RATE_NAME, PACE_LOCK_NAME}
    stray = [
        name
        for name in files
        if name not in expected_top
        and not re.fullmatch(r"chapters/\d{3}\.json", name)
        and not name.endswith(".tmp")
        and not re.fullmatch(r"chapters/\.\d{3}\.\d+\.json", name)
        and not re.match(r"\.imaginize\.manifest\.lock\.(break|restore)\.", name)
    ]
    assert stray == []
    assert not (out / LOCK_NAME).exists()


def _lock_pid(out: Path) -> int | None:
    try:
        first = (out / LOCK_NAME).read_text(encoding="utf-8", errors="replace").split("\n")[0]
    except FileNotFoundError:
        return None
    return int(first) if first.isdigit() else None


def _is_stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except (OSError, IndexError):
        return False


def _freeze_lock_holder(out: Path, live: Mapping[int, str]) -> tuple[int, bool] | None:
    """SIGSTOP the worker holding the manifest lock, if one does within 0.2 s. Returns its
    pid and whether it still held the lock once stopped: then a kill lands inside its
    critical section for certain."""
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        pid = _lock_pid(out)
        if pid in live:
            os.kill(pid, signal.SIGSTOP)
            wait_for(functools.partial(_is_stopped, pid), 5, f"{pid} to stop")
            return pid, _lock_pid(out) == pid
        time.sleep(0.0005)
    return None


# === 3. two CLI runs on one book ===============================================================


@pytest.mark.slow
def test_two_cli_runs_share_one_book(tmp_path: Path, processes: Processes) -> None:
    count = 24
    book = make_book(tmp_path / "book.epub", count)
    out = tmp_path / "out"
    with server(tmp_path, "tests.test_concurrency:answer_in_half_a_second") as fake:
        runs = [
            processes.start(
                imaginize_cli(
                    book.path, "-o", str(out), "--base-url", fake.url, "--concurrent", str(n)
                ),
                f"run-{n}",
            )
            for n in (2, 3)
        ]
        # Which run's workers held claims: a claim's owner names a worker pid, which
        # descends from the launcher of its run.
        holders: dict[int, set[int]] = collections.defaultdict(set)
        launchers = {r.pid for r in runs}

        def both_done() -> bool:
            current = ManifestStore(out).read()
            for entry in current.chapters if current else ():
                if entry.status is mf.Status.IN_PROGRESS and entry.owner:
                    for launcher in launchers.intersection(ancestors(owner_pid(entry.owner))):
                        holders[launcher].add(entry.number)
            return all(r.poll() is not None for r in runs)

        wait_for(both_done, 90, "both runs to finish")
        requests = fake.requests()
    assert [r.returncode for r in runs] == [0, 0], [processes.output(f"run-{n}") for n in (2, 3)]
    assert set(holders) == launchers, "both runs must have worked on the book"
    assert chat_chapters(requests) == {n: 1 for n in range(1, count + 1)}
    assert all(r["status"] == 200 for r in requests)
    manifest = read_manifest(out)
    assert all(e.status is mf.Status.COMPLETED and e.attempts == 1 for e in manifest.chapters)
    check_results(out, book)
    for name in (CONTENTS, CHAPTERS, ELEMENTS):
        assert (out / name).is_file()
    assert f"- Chapters analysed: {count} of {count}" in (out / CONTENTS).read_text()


# === 4. Ctrl-C ===================================================================================


STOPPED_BOOK = 6


@contextlib.contextmanager
def slow_run(
    tmp_path: Path, processes: Processes
) -> Iterator[tuple[Book, Path, subprocess.Popen[bytes]]]:
    """A CLI run with two workers on a book whose replies take SLOW_REPLY seconds."""
    book = make_book(tmp_path / "book.epub", STOPPED_BOOK)
    out = tmp_path / "out"
    with server(tmp_path, "tests.test_concurrency:answer_slowly") as slow:
        yield (
            book,
            out,
            processes.start(
                imaginize_cli(
                    book.path, "-o", str(out), "--base-url", slow.url, "--concurrent", "2"
                ),
                "run",
            ),
        )


def two_fresh_claims(out: Path) -> tuple[set[int], list[mf.Entry]] | None:
    """The chapters done so far and the two in hand, once both were claimed under a second
    ago: with replies taking 2 s, neither can finish before the workers hear of a stop."""
    current = ManifestStore(out).read()
    if current is None:
        return None
    done = {e.number for e in current.chapters if e.status is mf.Status.COMPLETED}
    busy = [e for e in current.chapters if e.status is mf.Status.IN_PROGRESS]
    fresh = all(time.time() - (e.claimed_at or 0) < SLOW_REPLY / 2 for e in busy)
    return (done, busy) if len(busy) == 2 and fresh else None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.slow
def test_ctrl_c_gives_chapters_back_and_a_rerun_finishes(
    tmp_path: Path, processes: Processes, signum: int
) -> None:
    """Ctrl-C, or a SIGTERM to the launcher (a service manager, `kill`): the same stop."""
    with slow_run(tmp_path, processes) as (book, out, run):

        def chapters_done_and_fresh_claims() -> tuple[set[int], list[mf.Entry]] | None:
            got = two_fresh_claims(out)
            return got if got and got[0] else None

        done, in_hand = wait_for(chapters_done_and_fresh_claims, 60, "chapters done, two in hand")
        busy = {e.number for e in in_hand}
        before = read_manifest(out)
        interrupted_at = time.monotonic()
        run.send_signal(signum)
        code = wait_exit(run, 15)
        took = time.monotonic() - interrupted_at
    assert code == 130, processes.output("run")
    assert took < 5.0, f"Ctrl-C took {took:.1f}s"
    assert "interrupted" in processes.output("run")

    after = read_manifest(out)
    for entry in after.chapters:
        assert entry.status is not mf.Status.IN_PROGRESS, entry
        if entry.number in busy:
            # Given back, and the attempt not counted.
            old = before.entry(entry.number)
            assert entry.status is mf.Status.PENDING, entry
            assert (entry.attempts, entry.owner) == (old.attempts - 1, None)
    kept = {e.number for e in after.chapters if e.status is mf.Status.COMPLETED}
    assert done <= kept
    assert all(result_path(out, n).exists() for n in kept)
    assert (out / CONTENTS).is_file()  # the guides are written from what is done

    with server(tmp_path, "tests.replies:answer", "fast-server") as fast:
        rerun = processes.start(
            imaginize_cli(book.path, "-o", str(out), "--base-url", fast.url, "--concurrent", "2"),
            "rerun",
        )
        assert wait_exit(rerun, 60) == 0, processes.output("rerun")
        requests = fast.requests()
    # Only the chapters not finished before are asked for, each once.
    assert chat_chapters(requests) == {n: 1 for n in range(1, STOPPED_BOOK + 1) if n not in kept}
    assert all(e.status is mf.Status.COMPLETED for e in read_manifest(out).chapters)
    check_results(out, book)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's new parent may be slow to reap it, or never)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
def test_workers_of_a_launcher_killed_with_9_give_their_chapters_back_and_leave(
    tmp_path: Path, processes: Processes
) -> None:
    """The launcher cannot stop anything once killed with -9: its workers must notice."""
    with slow_run(tmp_path, processes) as (_, out, run):
        _, busy = wait_for(lambda: two_fresh_claims(out), 60, "two chapters in hand")
        workers = {owner_pid(e.owner) for e in busy if e.owner}
        assert len(workers) == 2 and run.pid not in workers
        run.kill()
        run.wait()
        killed_at = time.monotonic()
        wait_for(lambda: not any(map(_running, workers)) or None, 15, "the workers to leave")
        took = time.monotonic() - killed_at
    assert took < 5.0, f"the orphaned workers took {took:.1f}s to leave"
    after = read_manifest(out)
    for entry in busy:
        now = after.entry(entry.number)
        # Given back (not left to the 10-minute lease), and the attempt not counted.
        assert now.status is mf.Status.PENDING, now
        assert (now.attempts, now.owner) == (entry.attempts - 1, None)
    assert not any(e.status is mf.Status.IN_PROGRESS for e in after.chapters)


# === 5. kill -9 under a 10-minute lease ========================================================


@pytest.mark.slow
def test_claim_of_a_killed_worker_is_taken_over_at_once(
    tmp_path: Path, processes: Processes
) -> None:
    book = make_book(tmp_path / "book.epub", 2)
    out = tmp_path / "out"
    join(out, book)
    journal = tmp_path / "journal.txt"
    with server(tmp_path, "tests.test_concurrency:hang_on_chapter_one_once") as fake:
        # The 10-minute lease and the default poll: only the dead pid can free chapter 1.
        settings = RunSettings(provider(fake.url))
        spec = WorkerSpec(str(book.path), str(out), settings, journal=str(journal))
        assert spec.settings.claims.lease == 600.0
        ids = ["w1", "w2"]
        workers = start_behind_barrier(processes, spec, ids, tmp_path / "barrier")

        def stuck_on_one() -> mf.Entry | None:
            current = read_manifest(out)
            one, two = current.entry(1), current.entry(2)
            ready = one.status is mf.Status.IN_PROGRESS and two.status is mf.Status.COMPLETED
            return one if ready else None

        claim = wait_for(stuck_on_one, 60, "chapter 1 stuck in progress, chapter 2 done")
        assert claim.owner is not None
        victim = next(p for p in workers if p.pid == owner_pid(claim.owner))
        survivor = next(p for p in workers if p is not victim)
        victim.kill()
        victim.wait()
        killed_at = time.monotonic()
        wait_for(
            lambda: read_manifest(out).entry(1).status is mf.Status.COMPLETED,
            20,
            "chapter 1 to be taken over",
        )
        took = time.monotonic() - killed_at
        assert wait_exit(survivor, 30) == 0
    assert took < 5.0, f"took {took:.1f}s to take over a dead worker's chapter"
    entry = read_manifest(out).entry(1)
    assert entry.token > claim.token and entry.attempts == 2
    (one,) = [p for p in read_journal(journal) if p.number == 1]
    assert owner_pid(one.owner) == survivor.pid and one.token == entry.token
    check_results(out, book)


# === 6. defaults ================================================================================


def test_ten_minute_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert mf.DEFAULT_LEASE == 600.0
    assert DEFAULT_LOCK_LIFETIME == 600.0
    claims = RunOptions().settings.claims
    assert (claims.lease, claims.lock_lifetime) == (600.0, 600.0)
    spec = WorkerSpec("book.epub", str(tmp_path), RunSettings(provider("http://127.0.0.1:9/v1")))
    assert (spec.settings.claims.lease, spec.settings.claims.lock_lifetime) == (600.0, 600.0)
    assert ManifestStore(tmp_path)._lock.lifetime == 600.0

    help_text = CliRunner().invoke(cli_module.cli, ["run", "--help"]).output
    flat = " ".join(help_text.split())
    for option in ("--lease", "--lock-lifetime"):
        assert re.search(re.escape(option) + r" FLOAT RANGE .*?\[default: 600\.0", flat), option

    # What a plain `imaginize book.epub` hands to the run.
    seen: list[RunOptions] = []

    def fake_run_book(book: Path, options: RunOptions, sink: object) -> RunFinished:
        seen.append(options)
        return RunFinished(tmp_path, 0, 0)

    monkeypatch.setattr(cli_module, "run_book", fake_run_book)
    assert cli_module.main([str(tmp_path / "book.epub"), "--base-url", "http://x/v1"]) == 0
    (used,) = seen
    claims = used.settings.claims
    assert (claims.lease, claims.lock_lifetime) == (600.0, 600.0)
    assert claims.heartbeat == DEFAULT_HEARTBEAT


@pytest.mark.parametrize("holder", ["empty", "live pid, no start token"])
@pytest.mark.slow
def test_a_lock_not_provably_stale_is_named_within_seconds(
    tmp_path: Path, processes: Processes, holder: str
) -> None:
    """A lock file filelock cannot judge stale (empty, or naming a live process without a
    start token) is broken only by age: the run says within 5 s what it waits for and how
    to clear it, instead of waiting out the lock's lifetime in silence."""
    book = tmp_path / "book.epub"
    make_book(book, 2)
    out = tmp_path / "out"
    out.mkdir()
    content = ""
    if holder != "empty":
        sleeper = processes.start([sys.executable, "-c", "import time; time.sleep(60)"], "held")
        content = f"{sleeper.pid}\n{os.uname().nodename}\n"
    (out / LOCK_NAME).write_text(content)
    began = time.monotonic()
    run = processes.start(
        imaginize_cli(book, "--provider", "offline", "-o", str(out), "--lock-lifetime", "6"),
        "run",
    )

    def said() -> str | None:
        lines = processes.output("run").splitlines()
        return next((line for line in lines if "for the lock" in line), None)

    line = wait_for(said, 8.0, "a line about the lock")
    # Within 5 s of the wait starting (the CLI itself takes a second or two to start).
    assert time.monotonic() - began < 8.0
    assert str(out / LOCK_NAME) in line
    assert ("empty lock file" if holder == "empty" else f"pid {content.split()[0]}") in line
    assert f"imaginize unlock {book} -o {out} --yes" in line
    assert wait_exit(run, 60) == 0  # broken by age at 6 s, then the run goes on
