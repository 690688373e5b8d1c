"""The worker loop without processes: its spec, its idle waits, and the loop itself run in
this process against real manifests, with a stand-in analyzer."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from imaginize.analysis.offline import cache as catalogue_cache
from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.coordination import manifest as mf
from imaginize.coordination.atomic import write_json_atomic
from imaginize.coordination.claims import StopFlag
from imaginize.coordination.store import ManifestStore
from imaginize.events import ChapterFinished, ChapterRetry, ChapterStarted
from imaginize.guides.images import ImageOptions
from imaginize.model import Analysis, Book, Chapter, Usage
from imaginize.pacing.pace import Limits
from imaginize.settings import ClaimPolicy, RunSettings
from imaginize.workers import units, worker
from imaginize.workers.spec import WorkerSpec
from imaginize.workers.units import Claimed, Settled, Wait
from imaginize.workers.worker import run_jobs, run_worker
from tests.fake_openai import FakeOpenAI
from tests.replies import answer
from tests.test_cli import SAMPLE, imaginize, start_imaginize

PROVIDER = ProviderConfig(ProviderKind.OPENAI, "fake", api_key="test", base_url="http://x/v1")
OFFLINE = ProviderConfig(ProviderKind.OFFLINE, "heuristic")


def test_the_spec_crosses_as_json_with_only_what_workers_use() -> None:
    settings = RunSettings(
        PROVIDER,
        limits=Limits(batch_size=2, batch_delay=0.5),
        claims=ClaimPolicy(lease=60.0, max_attempts=5),
        images=ImageOptions("dall-e-3", "32x32"),
    )
    spec = WorkerSpec("book.epub", "out", settings, chapters=(1, 3))
    assert WorkerSpec.from_json(spec.to_json()) == spec
    assert "extra" not in {f.name for f in fields(WorkerSpec)}
    assert "extra" not in json.loads(spec.to_json())


def idle_store(tmp_path: Path, now: float) -> ManifestStore:
    """Chapter 1 held by this live process; 2 out of attempts with its retry time passed; 3
    (not wanted) retryable and due; 4 retryable, due in 0.05 s."""
    store = ManifestStore(tmp_path, clock=lambda: now)
    store.join(
        book_path="book.epub",
        sha256="0" * 64,
        title="Book",
        chapters=[(n, f"Chapter {n}") for n in (1, 2, 3, 4)],
    )

    def setup(m: mf.Manifest) -> tuple[mf.Manifest, None]:
        m, _ = mf.claim(m, mf.owner_id("w9"), now, wanted=[1])
        failed = {2: (3, now - 5), 3: (1, now - 5), 4: (1, now + 0.05)}
        for number, (attempts, retry_at) in failed.items():
            entry = replace(
                m.entry(number),
                status=mf.Status.FAILED,
                attempts=attempts,
                retryable=True,
                retry_at=retry_at,
                token=m.next_token,
            )
            m = replace(m.with_entry(entry), next_token=m.next_token + 1)
        return m, None

    store.transact(setup)
    return store


def test_an_idle_worker_waits_for_retries_it_may_still_claim(tmp_path: Path) -> None:
    now = time.time()
    store = idle_store(tmp_path, now)
    claims = ClaimPolicy(poll=0.2, max_attempts=3)
    spec = WorkerSpec("book.epub", str(tmp_path), RunSettings(PROVIDER, claims=claims))
    # Chapter 2 is failed for good and 3 is not wanted: neither is a reason to wake early.
    got = units.claim_next(Kind(spec, store, (1, 2)), mf.owner_id("w1"), StopFlag())
    assert got == Wait(0.2)
    # A retry due soon among the wanted ones is.
    got = units.claim_next(Kind(spec, store, (1, 2, 4)), mf.owner_id("w1"), StopFlag())
    assert isinstance(got, Wait) and 0.04 <= got.seconds <= 0.05


class Kind:
    """The claiming half of a unit kind: its manifest and what it wants; always ready."""

    name = "stand-in"

    def __init__(self, spec: WorkerSpec, store: ManifestStore, wanted: tuple[int, ...]) -> None:
        self.spec, self.store, self.beats, self._wanted = spec, store, store, wanted

    def wanted(self) -> tuple[int, ...]:
        return self._wanted

    def ready(self, stop: StopFlag) -> float:
        return 0.0


def test_the_next_unit_is_the_first_claimable_in_order_else_the_shortest_wait(
    tmp_path: Path,
) -> None:
    now = time.time()
    store = idle_store(tmp_path, now)
    spec = WorkerSpec("book.epub", str(tmp_path), RunSettings(PROVIDER))
    owner, stop = mf.owner_id("w1"), StopFlag()
    held, due_soon = Kind(spec, store, (1,)), Kind(spec, store, (4,))
    got = units.next_unit([held, due_soon], owner, stop)
    assert isinstance(got, Wait) and got.seconds <= 0.05  # the shorter of the two waits
    failed_for_good = Kind(spec, store, (2,))  # out of attempts: nothing left to do
    assert units.next_unit([failed_for_good], owner, stop) == Settled()
    time.sleep(0.06)  # chapter 4's retry comes due (on a store with a running clock)
    due = Kind(spec, ManifestStore(tmp_path), (4,))
    got = units.next_unit([held, failed_for_good, due], owner, stop)
    assert isinstance(got, Claimed) and got.kind is due and got.claim.number == 4
    stop.finish_and_leave()  # a worker that is leaving claims nothing more
    assert isinstance(units.next_unit([Kind(spec, store, (3,))], owner, stop), Wait)


# --- the loop, in this process, with a stand-in analyzer ----------------------------------------


class Quick:
    """An analyzer that finds nothing, after `hook(chunk)` (a sleep, a stop request)."""

    provider = "test"
    model = "none"
    spent = Usage()

    def __init__(self, hook: Callable[[Chapter], None] = lambda chunk: None) -> None:
        self.hook = hook

    def analyze(self, chunk: Chapter, scenes: int) -> Analysis:
        self.hook(chunk)
        return Analysis(scenes=(), elements=(), usage=Usage(3, 4))

    def chunk_tokens(self, configured: int) -> int:
        return configured

    def take_notices(self) -> list[str]:
        return []


def make_book(tmp_path: Path, name: str, count: int) -> tuple[WorkerSpec, Book]:
    out = tmp_path / name
    chapters = tuple(
        Chapter(n, f"{name} {n}", f"Wren walked the orchard in {name}, part {n}.")
        for n in range(1, count + 1)
    )
    book = Book(tmp_path / f"{name}.epub", name, "A", "en", chapters)
    ManifestStore(out).join(
        book_path=str(book.path),
        sha256=name * 16,
        title=name,
        chapters=[(c.number, c.title) for c in chapters],
    )
    journal = str(tmp_path / "journal")
    spec = WorkerSpec(str(book.path), str(out), RunSettings(OFFLINE), journal=journal)
    return spec, book


def journal(tmp_path: Path) -> list[tuple[int, int]]:
    lines = (tmp_path / "journal").read_text(encoding="utf-8").split("\n")
    return [(int(n), int(t)) for n, t, _owner in (line.split() for line in lines if line)]


class Transactions:
    """Counts every ManifestStore transaction (lock taken), and the publishes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.all = 0
        self.published: list[tuple[str, int]] = []  # (book folder, chapter published)
        transact, publish = ManifestStore.transact, ManifestStore.publish

        def counted_transact(store: ManifestStore, change: Any) -> Any:
            self.all += 1
            return transact(store, change)

        def counted_publish(store: ManifestStore, number: int, *args: Any, **kwargs: Any) -> Any:
            self.published.append((store.out_dir.name, number))
            return publish(store, number, *args, **kwargs)

        monkeypatch.setattr(ManifestStore, "transact", counted_transact)
        monkeypatch.setattr(ManifestStore, "publish", counted_publish)


def test_each_chapter_is_one_claim_and_one_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish claims nothing: the loop's next look does (a transaction of its own)."""
    spec, book = make_book(tmp_path, "one", 5)
    counted = Transactions(monkeypatch)
    assert run_worker(spec, "w1", book=book, analyzer=Quick()) == 5
    assert counted.all == 10
    assert counted.published == [("one", n) for n in range(1, 6)]
    done = journal(tmp_path)
    assert [n for n, _ in done] == [1, 2, 3, 4, 5]
    assert [t for _, t in done] == sorted({t for _, t in done})
    m = ManifestStore(Path(spec.out_dir)).read()
    assert m is not None and all(e.status is mf.Status.COMPLETED for e in m.chapters)
    assert all(e.owner is None and e.tokens == 7 for e in m.chapters)


def test_a_worker_told_to_stop_during_a_publish_claims_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, book = make_book(tmp_path, "one", 3)
    stop = StopFlag()
    publish = ManifestStore.publish

    def stopped_during(store: ManifestStore, *args: Any, **kwargs: Any) -> Any:
        outcome = publish(store, *args, **kwargs)
        stop.finish_and_leave()  # the signal lands while the transaction runs
        return outcome

    monkeypatch.setattr(ManifestStore, "publish", stopped_during)
    assert run_worker(spec, "w1", book=book, analyzer=Quick(), stop=stop) == 1
    m = ManifestStore(Path(spec.out_dir)).read()
    assert m is not None
    assert m.entry(1).status is mf.Status.COMPLETED
    assert [(e.status, e.token) for e in m.chapters[1:]] == [(mf.Status.PENDING, 0)] * 2


def test_a_worker_stopping_before_it_publishes_claims_nothing_more(tmp_path: Path) -> None:
    spec, book = make_book(tmp_path, "one", 3)
    stop = StopFlag()
    leave = Quick(lambda c: stop.finish_and_leave())
    assert run_worker(spec, "w1", book=book, analyzer=leave, stop=stop) == 1
    m = ManifestStore(Path(spec.out_dir)).read()
    assert m is not None
    assert m.entry(1).status is mf.Status.COMPLETED
    assert [(e.status, e.token) for e in m.chapters[1:]] == [(mf.Status.PENDING, 0)] * 2


def test_an_error_after_the_publish_leaves_no_chapter_claimed(tmp_path: Path) -> None:
    spec, book = make_book(tmp_path, "one", 3)

    def sink(event: object) -> None:
        if isinstance(event, ChapterFinished):
            raise OSError("the display went away")

    with pytest.raises(OSError, match="display"):
        run_worker(spec, "w1", book=book, analyzer=Quick(), sink=sink)
    m = ManifestStore(Path(spec.out_dir)).read()
    assert m is not None
    assert m.entry(1).status is mf.Status.COMPLETED
    assert (m.entry(2).status, m.entry(2).owner) == (mf.Status.PENDING, None)
    assert not any(e.status is mf.Status.IN_PROGRESS for e in m.chapters)


@pytest.mark.slow
def test_a_chapter_of_an_earlier_book_that_comes_due_goes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Book order holds across books: each claim looks at the books in order."""
    first_spec, first = make_book(tmp_path, "first", 1)
    second_spec, second = make_book(tmp_path, "second", 2)
    due = time.time() + 0.3
    store = ManifestStore(Path(first_spec.out_dir))

    def failed(m: mf.Manifest) -> tuple[mf.Manifest, None]:
        m, got = mf.claim(m, "elsewhere:1:w", time.time())
        assert got is not None
        return mf.fail(m, 1, got.token, time.time(), "503", retryable=True, retry_at=due)[0], None

    store.transact(failed)
    counted = Transactions(monkeypatch)
    started: list[str] = []

    def sink(event: object) -> None:
        if isinstance(event, ChapterStarted):
            started.append(event.title)

    # The second book's first chapter takes until the first book's retry is due.
    slow = Quick(lambda chunk: time.sleep(max(0.0, due - time.time()) + 0.1))
    worked = run_jobs([(first_spec, first), (second_spec, second)], "w1", sink=sink, analyzer=slow)
    assert worked == 3
    assert started == ["second 1", "first 1", "second 2"]
    assert counted.published == [("second", 1), ("first", 1), ("second", 2)]


# --- idle waits ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_idle_wait_ends_when_a_manifest_is_rewritten(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    write_json_atomic(manifest, {"v": 1})
    rewrite = threading.Timer(0.2, lambda: write_json_atomic(manifest, {"v": 2}))
    started = time.monotonic()
    rewrite.start()
    try:
        worker.nap(30.0, [tmp_path / "absent.json", manifest], time.sleep, StopFlag())
    finally:
        rewrite.cancel()
    # Woken by the rename, not by the end of the 30 s.
    assert time.monotonic() - started < 10.0


@pytest.mark.slow
def test_an_idle_wait_ends_when_a_transaction_appends_to_the_journal(tmp_path: Path) -> None:
    """A transaction leaves the snapshot alone and appends to the journal, which is watched."""
    store = ManifestStore(tmp_path)
    store.join(book_path="/b.epub", sha256="0" * 64, title="B", chapters=[(1, "One")])
    kind: Any = type("Kind", (), {"store": store})
    other = ManifestStore(tmp_path)
    claim = threading.Timer(0.2, lambda: other.claim("h:2:w", lease=600.0, max_attempts=3))
    started = time.monotonic()
    claim.start()
    try:
        worker.nap(30.0, units.watched([kind]), time.sleep, StopFlag())
    finally:
        claim.cancel()
    assert time.monotonic() - started < 10.0


def test_an_idle_look_passes_over_finished_chapters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Near the end of a long book an idle worker looks at the few open chapters only."""
    done = [mf.Entry(n, f"C{n}", status=mf.Status.COMPLETED) for n in range(1, 2001)]
    failed = mf.Entry(2001, "C2001", status=mf.Status.FAILED, retryable=True, retry_at=50.0)
    m = mf.Manifest("/b", "h", "T", (*done, failed, mf.Entry(2002, "C2002")), 1)
    looked: list[int] = []
    reason = mf.claimable_reason

    def counted(entry: mf.Entry, *args: Any) -> str | None:
        looked.append(entry.number)
        return reason(entry, *args)

    monkeypatch.setattr(mf, "claimable_reason", counted)
    policy = ClaimPolicy()
    assert units.anything_claimable(m, policy, 10.0, None)
    assert looked == [2001, 2002]
    assert units.idle_wait(m, policy, 10.0, (2001,)) == pytest.approx(min(policy.poll, 40.0))


def test_an_idle_wait_without_changes_sleeps_it_all_in_short_naps(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    write_json_atomic(manifest, {"v": 1})
    naps: list[float] = []
    worker.nap(0.2, [manifest], naps.append, StopFlag())
    assert sum(naps) == pytest.approx(0.2)
    assert max(naps) <= worker.CHANGE_CHECK
    naps.clear()
    worker.nap(0.001, [manifest], naps.append, StopFlag())  # never less than one nap
    assert naps == [pytest.approx(0.001)]


def test_a_stop_at_once_gives_the_chapter_in_hand_back(tmp_path: Path) -> None:
    """SIGTERM (stop_now) while a chapter is being analysed: within gives it up within a
    poll, the chapter goes back uncounted and nothing else is claimed."""
    spec, book = make_book(tmp_path, "one", 3)
    stop = StopFlag()
    working = threading.Event()

    def hang(chunk: Chapter) -> None:
        working.set()
        time.sleep(30)

    threading.Thread(target=lambda: working.wait(30) and stop.stop_now(), daemon=True).start()
    started = time.monotonic()
    assert run_worker(spec, "w1", book=book, analyzer=Quick(hang), stop=stop) == 0
    assert time.monotonic() - started < 5
    m = ManifestStore(Path(spec.out_dir)).read()
    assert m is not None
    one = m.entry(1)
    assert (one.status, one.owner, one.attempts) == (mf.Status.PENDING, None, 0)
    assert [e.token for e in m.chapters[1:]] == [0, 0]


def test_an_idle_wait_ends_when_the_worker_is_asked_to_stop(tmp_path: Path) -> None:
    naps: list[float] = []
    stop = StopFlag()

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            stop.finish_and_leave()

    worker.nap(150.0, [tmp_path / "m.json"], nap, stop)
    assert len(naps) == 3  # not the 7,500 naps of 150 s


@pytest.mark.slow
def test_the_offline_index_is_built_before_the_first_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A book-wide index that takes longer than --chapter-timeout (a huge book) is built
    before any chapter is claimed: it never times the first chapter out."""
    spec, book = make_book(tmp_path, "one", 2)
    built: list[float] = []

    class SlowCatalogue(catalogue_cache.Catalogue):
        def __init__(self, texts: list[str]) -> None:
            time.sleep(1.0)
            super().__init__(texts)
            built.append(time.time())

    # The catalogue is built through its cache (one build per book, not per worker).
    monkeypatch.setattr(catalogue_cache, "Catalogue", SlowCatalogue)
    events: list[object] = []
    quick = replace(spec, settings=replace(spec.settings, chapter_timeout=0.5))
    assert run_worker(quick, "w1", book=book, sink=events.append) == 2
    assert not [e for e in events if isinstance(e, ChapterRetry)]
    m = ManifestStore(Path(spec.out_dir)).read()
    assert m is not None
    assert [e.attempts for e in m.chapters] == [1, 1]
    assert len(built) == 1 and m.entry(1).claimed_at is not None
    assert m.entry(1).claimed_at >= built[0]


# --- what workers tell the user in process mode ------------------------------------------------


@pytest.mark.slow
def test_takeovers_and_discarded_results_reach_the_user_in_process_mode(tmp_path: Path) -> None:
    """`imaginize book.epub -j 2`: a worker taking over a dead worker's chapter, and a worker
    whose chapter was taken over while it worked, both say so on the CLI's stderr."""
    book = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, book)
    out = tmp_path / "out"
    dead = mf.owner_id("w9", pid=999_999)  # no process has this pid: provably gone
    with FakeOpenAI(responder=lambda body: {**answer(body), "delay": 0.8}) as server:
        args = ("-o", out, "--base-url", server.url)
        first = imaginize(book, *args, "--chapters", "1")
        assert first.returncode == 0, first.stderr
        store = ManifestStore(out)
        # Chapter 5 is left in progress by a worker that died: whoever reaches it takes it over.
        store.transact(lambda m: mf.claim(m, dead, time.time(), wanted=[5]))
        run = start_imaginize(book, *args, "-j", "2")
        try:

            def working_on() -> int | None:
                current = store.read()
                busy = [] if current is None else current.chapters
                return next(
                    (
                        e.number
                        for e in busy
                        if e.status is mf.Status.IN_PROGRESS and e.owner != dead and e.number > 5
                    ),
                    None,
                )

            stolen = wait_until(working_on, 60)

            def steal(m: mf.Manifest) -> tuple[mf.Manifest, None]:
                # As a worker would after the lease: the claim gets a new owner and token.
                entry = replace(m.entry(stolen), owner=dead, token=m.next_token)
                return replace(m.with_entry(entry), next_token=m.next_token + 1), None

            store.transact(steal)
            _, stderr = run.communicate(timeout=120)
        finally:
            run.kill()
    assert run.returncode == 0, stderr
    assert "chapter 5: taken over (owner " in stderr, stderr
    assert f"chapter {stolen}: taken over (owner " in stderr, stderr
    assert f"chapter {stolen}: claim " in stderr and "was taken over; result discarded" in stderr


def wait_until(condition: Callable[[], int | None], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = condition()
        if got is not None:
            return got
        time.sleep(0.02)
    raise AssertionError("timed out")
