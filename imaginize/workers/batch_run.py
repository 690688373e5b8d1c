"""--batch-api: the chapters' requests sent through OpenAI's Batch API instead of one by one.

One process does the whole flow for a library, in rounds (`BatchRun.step`), each read top to
bottom:

1. poll: each of the books' batches still open on the server is retrieved; an ended one
   (completed, expired, failed, cancelled) has its output and error files downloaded, its
   replies filed (`ReplyFile`) and then, under the lock, is recorded as ingested;
2. resume: a batch file recorded but not yet uploaded or created (its process was killed) is
   sent now, found again on the server by its ref, or, when its file never got written,
   given up and its chapters given back;
3. play: every pending chapter and every batched chapter whose batches are all ingested is
   analysed by the live analyzer over the replies on file (`ReplayAnalyzer`): a chapter with
   every reply in is published exactly as a worker publishes one; one whose replies are
   unusable after the repair rules fails; one needing more requests (the first round, a
   repair, a retry of a failed or expired request) has them planned;
4. submit: the planned requests are recorded in the manifest under the lock (the chapter
   becomes `batched` with a new token: a chapter another process took first is left out),
   written to a local file, uploaded, and the batch created; each step recorded as it is
   done. Files are as few as the request, byte and enqueued-token limits allow; tokens that
   open batches hold count against the cap.

Every state lives in the books' manifests and the files beside them, so a re-run (after
Ctrl-C, kill -9, or from another terminal) goes on where the last one stopped, and never
sends a chapter twice.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import openai

from imaginize import run as runner
from imaginize.analysis.openai import client as openai_client
from imaginize.analysis.openai.batch import (
    DEFAULT_TOKEN_CAP,
    MAX_BYTES,
    MAX_REQUESTS,
    Limits,
    ReplayAnalyzer,
    Reply,
    ReplyFile,
    custom_id,
    enqueued_tokens,
    parse_results,
    request_line,
    split_files,
)
from imaginize.analysis.openai.chat import OpenAIAnalyzer
from imaginize.analysis.pipeline import analyze_chapter
from imaginize.analysis.providers import ProviderConfig, ProviderKind, make_analyzer
from imaginize.coordination import batch_state as bs
from imaginize.coordination import manifest as mf
from imaginize.coordination.atomic import fsync_dir, write_atomic, write_json_atomic
from imaginize.coordination.store import ManifestStore
from imaginize.errors import (
    AuthenticationError,
    BookError,
    ConfigError,
    ManifestError,
    ProviderError,
)
from imaginize.events import (
    BatchStateText,
    ChapterFinished,
    EventSink,
    LibraryFinished,
    Notice,
    RunFinished,
    ignore,
)
from imaginize.guides.results import CHAPTERS_DIR
from imaginize.model import ChapterResult, Usage
from imaginize.pacing import open_pacer
from imaginize.pacing.pace import SharedPace, pace_digest, server_name

# Local copies of the batch files, until ingested: what a re-run uploads after a kill.
FILES_DIR = ".imaginize.batches"
# Result files written at once when a round publishes many chapters.
STAGING_THREADS = 8


@dataclass(frozen=True)
class BatchOptions:
    wait: bool = True
    token_cap: int = DEFAULT_TOKEN_CAP
    then_live: bool = False
    # Seconds between looks at open batches (OpenAI's take minutes to hours).
    poll: float = 30.0
    max_requests: int = MAX_REQUESTS
    max_bytes: int = MAX_BYTES


@dataclass
class _Book:
    job: runner._Prepared
    sha256: str
    replies: ReplyFile
    analyzer: ReplayAnalyzer


@dataclass
class _Planned:
    book: _Book
    number: int
    token: int
    lines: list[tuple[str, str, bytes, int]]  # custom_id, key, line, enqueued tokens

    @property
    def tokens(self) -> int:
        return sum(line[3] for line in self.lines)


class BatchRun:
    """The batch flow over prepared books (`run._join`); see the module docstring."""

    def __init__(
        self,
        jobs: list[runner._Prepared],
        options: runner.RunOptions,
        batch: BatchOptions,
        sink: EventSink = ignore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config = options.settings.provider
        if config.kind is not ProviderKind.OPENAI:
            raise ConfigError("--batch-api needs an OpenAI-compatible server (an API key)")
        self.settings, self.batch, self.sink, self.clock = options.settings, batch, sink, clock
        self.max_attempts = options.settings.claims.max_attempts
        self.server = server_name(config.base_url)
        self.client = openai_client.build(config.api_key, config.base_url, 120.0)
        self.owner = mf.owner_id("batch")
        self.limits = Limits(batch.max_requests, batch.max_bytes, batch.token_cap)
        self.books = [self._book(job) for job in jobs]
        self._said: dict[str, str] = {}
        # Output and error file ids of the batches seen ended, by ref.
        self._files: dict[str, tuple[str | None, str | None]] = {}
        # After a batch was refused for the token cap: send nothing more while any is open.
        self._cap_refused = False

    def _book(self, job: runner._Prepared) -> _Book:
        # Batch requests go to OpenAI's hosted service: no quote choices (a local grammar's).
        analyzer = make_analyzer(self.settings.provider, job.book, hosted=True)
        assert isinstance(analyzer, OpenAIAnalyzer)
        replies = ReplyFile(job.out_dir)
        current = job.store.read()
        sha = current.book_sha256 if current else job.spec.book_sha256
        if current is not None:
            # Replies matter only to the chapters in flight: one done again (--force,
            # --retry-failed, given back) must be asked again, not given its old replies.
            replies.keep_only({e.number for e in current.chapters if e.status is mf.Status.BATCHED})
        return _Book(job, sha, replies, ReplayAnalyzer.over(analyzer, {}))

    # --- the whole run ----------------------------------------------------------------------

    def check_server(self) -> None:
        """A server without the Batch API (llama.cpp, Ollama): one line, before any upload."""
        try:
            self.client.batches.list(limit=1)
        except openai.AuthenticationError as exc:
            raise AuthenticationError(f"{self.server} refused the API key: {exc}") from None
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 405, 501):
                raise ConfigError(
                    f"{self.server} has no Batch API (/v1/batches answered "
                    f"{exc.status_code}); run without --batch-api"
                ) from None
            raise ProviderError(f"{self.server}: {exc}", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"{self.server} could not be reached: {exc}") from None

    def run(self) -> bool:
        """Rounds until every selected chapter is settled (or, without wait, until what
        there is to send is sent). True when nothing is left open."""
        self.check_server()
        while True:
            left = self.step()
            if not left:
                return True
            if not self.batch.wait:
                return False
            if self.batch.then_live and self._only_followups():
                return False
            time.sleep(self.batch.poll)

    def step(self) -> bool:
        """One round: poll, resume, play, submit. Whether anything is still open."""
        for book in self.books:
            self._poll(book)
        for book in self.books:
            self._resume(book)
        planned: list[_Planned] = []
        room = self._room()
        for book in self.books:
            planned += self._play(book, room - sum(p.tokens for p in planned))
        if self.batch.then_live:
            planned = [p for p in planned if not self._followup(p)]
        self._submit(planned)
        return any(self._open(book) for book in self.books)

    def _open(self, book: _Book) -> bool:
        current = book.job.store.read()
        if current is None:
            return False
        wanted = set(book.job.wanted)
        if bs.open_records(current):
            return True
        now = self.clock()
        return any(
            e.number in wanted
            and (e.status is mf.Status.BATCHED or bs.can_batch(e, now, self.max_attempts))
            for e in current.chapters
        )

    # --- 1. poll and ingest ----------------------------------------------------------------

    def _poll(self, book: _Book) -> None:
        current = book.job.store.read()
        for record in bs.open_records(current) if current else ():
            if record.id is None:
                continue
            try:
                if record.status not in bs.ENDED:
                    seen = self.client.batches.retrieve(record.id)
                    record = self._observed(book, record, seen)
                if record.status in bs.ENDED:
                    self._ingest(book, record)
            except openai.APIError as exc:
                self.sink(Notice(f"batch {record.id}: {self.server} did not answer ({exc})"))

    def _observed(self, book: _Book, record: mf.BatchRecord, seen: Any) -> mf.BatchRecord:
        changes = _seen(seen)
        book.job.store.transact(lambda m: (bs.update_record(m, record.ref, **changes), None))
        updated = replace(record, **changes)
        self._say_state(book, updated)
        self._files[record.ref] = (seen.output_file_id, seen.error_file_id)
        return updated

    def _ingest(self, book: _Book, record: mf.BatchRecord) -> None:
        """File an ended batch's replies, then record it ingested (in that order: a kill in
        between files them again, harmlessly)."""
        assert record.id is not None
        output, errors = self._files.get(record.ref, (None, None))
        if record.ref not in self._files:
            seen = self.client.batches.retrieve(record.id)
            output, errors = seen.output_file_id, seen.error_file_id
        current = book.job.store.read()
        assert current is not None
        keys = {
            q.custom_id: (q.key, e.number)
            for e in current.chapters
            if e.status is mf.Status.BATCHED
            for q in e.batch or ()
            if q.batch == record.ref
        }
        filed: list[tuple[str, int, Reply]] = []
        for file_id in (output, errors):
            if file_id:
                text = self.client.files.content(file_id).text
                filed += [(*keys[c], r) for c, r in parse_results(text) if c in keys]
        book.replies.append(filed)
        refused = record.status == "failed" and "token_limit_exceeded" in (record.error or "")

        def change(m: mf.Manifest) -> tuple[mf.Manifest, list[int]]:
            m = bs.update_record(m, record.ref, ingested=True)
            if refused:  # not the chapters' fault: back to pending, sent again later
                return bs.give_back(m, [record.ref], f"batch refused: {record.error}")
            return m, []

        back = book.job.store.transact(change)
        if refused:
            self._cap_refused = True
            then = f"its {len(back)} chapters wait for the open batches"
            if not self._enqueued():
                # Refused with nothing else open: the server's cap is below ours.
                cap = max(1, record.tokens // 2)
                self.limits = replace(self.limits, tokens=min(self.limits.tokens, cap))
                then = f"sending at most {self.limits.tokens:,} tokens at once from now on"
            self.sink(
                Notice(
                    f"batch {record.id} was refused for the enqueued-token cap "
                    f"({record.error}); {then} (--batch-token-cap)"
                )
            )
        with_files = Path(book.job.out_dir) / FILES_DIR / f"{record.ref}.jsonl"
        with_files.unlink(missing_ok=True)

    def _say_state(self, book: _Book, record: mf.BatchRecord, *, quiet: bool = False) -> None:
        """One line when a batch's state or counts change; `quiet`: only remember it."""
        line = (
            f"{book.job.book.title}: batch {record.id} {record.status} "
            f"({record.completed + record.failed}/{record.requests} done"
            + (f", {record.failed} failed" if record.failed else "")
            + ")"
        )
        if self._said.get(record.ref) != line:
            self._said[record.ref] = line
            if not quiet:
                self.sink(Notice(BatchStateText(line)))

    # --- 2. resume what a killed process left ------------------------------------------------

    def _resume(self, book: _Book) -> None:
        current = book.job.store.read()
        for record in bs.open_records(current) if current else ():
            if record.id is not None or record.status != "unsent":
                continue
            if record.owner not in (None, self.owner) and not mf.owner_is_dead(record.owner):
                continue  # another process is sending it now
            self._sending(book, record)

    def _sending(self, book: _Book, record: mf.BatchRecord) -> None:
        """`_send`, where a server error leaves the record as it is, to be sent next round
        (it stays this process's own until then); a refused key stops the run."""
        try:
            self._send(book, record)
        except openai.AuthenticationError as exc:
            raise AuthenticationError(f"{self.server} refused the API key: {exc}") from None
        except openai.APIError as exc:
            self.sink(Notice(f"batch file {record.ref}: {self.server} did not take it ({exc})"))

    def _send(self, book: _Book, record: mf.BatchRecord) -> None:
        """Upload and create batch `record` (recorded, its local file written), recording
        each step; what a killed sender left is taken from where it stopped."""
        store = book.job.store

        def take(m: mf.Manifest) -> tuple[mf.Manifest, bool]:
            now = bs.record(m, record.ref)
            if now is None or now.id is not None or now.owner != record.owner:
                return m, False
            return bs.update_record(m, record.ref, owner=self.owner), True

        if not store.transact(take):
            return
        local = Path(book.job.out_dir) / FILES_DIR / f"{record.ref}.jsonl"
        if not local.exists():
            # Killed between recording the chapters and writing their file: nothing was sent.
            def abandon(m: mf.Manifest) -> tuple[mf.Manifest, list[int]]:
                m = bs.update_record(m, record.ref, status="abandoned", ingested=True, owner=None)
                return bs.give_back(m, [record.ref])

            store.transact(abandon)
            return
        # Taken over from a sender that died: it may have created the batch before it could
        # record it.
        found = self._find(record.ref) if record.owner != self.owner else None
        if found is None:
            with local.open("rb") as handle:
                uploaded = self.client.files.create(file=(local.name, handle), purpose="batch")
            found = self.client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"imaginize_ref": record.ref, "book": book.sha256[:16]},
            )
        batch = found
        # One transaction (a batch record's change is a snapshot): the id, the file, and the
        # state it is in, with its errors when it was refused at once.
        changes = _seen(batch) | {"id": batch.id, "input_file": batch.input_file_id, "owner": None}
        store.transact(lambda m: (bs.update_record(m, record.ref, **changes), None))
        self._files[record.ref] = (batch.output_file_id, batch.error_file_id)
        submitted = (
            f"{book.job.book.title}: batch {batch.id} submitted: {record.requests} requests, "
            f"{record.tokens:,} tokens enqueued"
        )
        self.sink(Notice(BatchStateText(submitted)))
        self._say_state(book, replace(record, **changes), quiet=batch.status not in bs.ENDED)

    def _find(self, ref: str) -> Any:
        """The batch created for `ref` by a process killed before it recorded the id."""
        for batch in self.client.batches.list(limit=100):
            if (batch.metadata or {}).get("imaginize_ref") == ref:
                return batch
        return None

    # --- 3. play the chapters over the replies -------------------------------------------------

    def _play(self, book: _Book, room: int) -> list[_Planned]:
        """Play the book's chapters that may move: every batched one whose batches are
        ingested, and pending ones while their requests fit in `room` tokens (the rest wait
        for a later round rather than be played for nothing). Finished chapters are published
        together, in one critical section."""
        job, store = book.job, book.job.store
        current = store.read()
        if current is None:
            return []
        now = self.clock()
        wanted = set(job.wanted)
        ready = bs.ready(current, wanted)
        fresh = [
            e
            for e in current.chapters
            if e.number in wanted
            and e.status is not mf.Status.BATCHED
            and bs.can_batch(e, now, self.max_attempts)
        ]
        if not ready and not fresh:
            return []
        book.analyzer.replies = book.replies.load()
        chapters = {c.number: c for c in job.book.chapters}
        planned: list[_Planned] = []
        finished: list[tuple[mf.Entry, ChapterResult]] = []
        for entry in ready + fresh:
            if entry.status is not mf.Status.BATCHED and room <= 0:
                break
            outcome = self._play_one(book, entry, chapters[entry.number])
            if isinstance(outcome, _Planned):
                planned.append(outcome)
                room -= outcome.tokens
            elif outcome is not None:
                finished.append((entry, outcome))
        self._publish(book, finished)
        return planned

    def _play_one(
        self, book: _Book, entry: mf.Entry, chapter: Any
    ) -> _Planned | ChapterResult | None:
        """The chapter's result when every reply is in; its requests to send when some are
        missing; None when it failed."""
        analyzer = book.analyzer
        analyzer.start_chapter()
        before = analyzer.spent
        try:
            result = analyze_chapter(
                chapter,
                analyzer,
                pages_per_image=self.settings.pages_per_image,
                max_chunk_tokens=self.settings.max_chunk_tokens,
            )
        except ProviderError as exc:  # unusable after the repair rules, as live
            self._fail(book, entry, str(exc), analyzer.spent - before)
            return None
        finally:
            for message in analyzer.take_notices():
                self.sink(Notice(message))
        if not analyzer.missing:
            return result
        if entry.attempts >= self.max_attempts:
            reason = analyzer.errors[-1] if analyzer.errors else "no usable reply"
            error = f"no reply after {entry.attempts} batch attempts: {reason}"
            self._fail(book, entry, error, analyzer.spent - before)
            return None
        attempt = entry.attempts + 1
        lines = []
        for chunk, wanted in enumerate(analyzer.missing):
            custom = custom_id(book.sha256, entry.number, chunk, attempt)
            line = request_line(custom, wanted.body)
            lines.append((custom, wanted.key, line, enqueued_tokens(wanted.params)))
        return _Planned(book, entry.number, entry.token, lines)

    def _fail(self, book: _Book, entry: mf.Entry, error: str, spent: Usage) -> None:
        pair = (spent.prompt_tokens, spent.completion_tokens)
        if book.job.store.transact(lambda m: bs.fail(m, entry.number, entry.token, error, pair)):
            self.sink(Notice(f"{book.job.book.title}: chapter {entry.number} failed: {error}"))

    def _publish(self, book: _Book, finished: list[tuple[mf.Entry, ChapterResult]]) -> None:
        """As a worker publishes, for many chapters at once: each result staged, then, in one
        critical section, each renamed into place and recorded, only while its chapter
        still carries the token it was played under; the folder synced once."""
        if not finished:
            return
        folder = Path(book.job.out_dir) / CHAPTERS_DIR
        staged: dict[int, tuple[Path, ChapterResult]] = {}
        for entry, result in finished:
            result = replace(result, book_sha256=book.sha256)
            staged[entry.number] = (folder / f".{entry.number:03d}.{entry.token}.json", result)
        # Each written as a worker writes it, fsync included; several at once, so that the
        # file system commits their fsyncs together (one at a time, they are most of the
        # time a round takes).
        with ThreadPoolExecutor(STAGING_THREADS) as pool:
            list(
                pool.map(
                    lambda item: write_json_atomic(item[0], item[1].to_json(), sync_dir=False),
                    staged.values(),
                )
            )

        def change(m: mf.Manifest) -> tuple[mf.Manifest, list[ChapterResult]]:
            done: list[ChapterResult] = []
            now = self.clock()
            for entry, _ in finished:
                path, result = staged[entry.number]
                if not path.exists():  # swept by another process's start: played again later
                    continue
                tokens = result.usage.total_tokens
                m, ok = bs.complete(m, entry.number, entry.token, now, tokens)
                if ok:
                    os.replace(path, folder / f"{entry.number:03d}.json")
                    done.append(result)
            if done:
                fsync_dir(folder)
            return m, done

        published: list[ChapterResult] = []
        try:
            published = book.job.store.transact(change)
        finally:
            done = {r.chapter for r in published}
            for number, (path, _) in staged.items():
                if number not in done:  # not renamed into place: discarded
                    path.unlink(missing_ok=True)
        for result in published:
            self.sink(ChapterFinished(result, 0.0, "batch", book.job.book.title))

    # --- 4. submit ----------------------------------------------------------------------

    def _submit(self, planned: list[_Planned]) -> None:
        by_book: dict[int, list[_Planned]] = {}
        for item in planned:
            by_book.setdefault(id(item.book), []).append(item)
        room = self._room()
        if room <= 0:
            return
        for items in by_book.values():
            units = [
                (b"".join(line for _, _, line, _ in p.lines), sum(t for *_, t in p.lines))
                for p in items
            ]
            files = split_files(units, self.limits, room)
            for indexes in files:
                room -= sum(units[i][1] for i in indexes)
                self._submit_file(items[0].book, [items[i] for i in indexes])

    def _room(self) -> int:
        """Tokens a new batch may enqueue now: the cap less what open batches hold; none
        while any is open after a refusal for the cap."""
        held = self._enqueued()
        if self._cap_refused and held:
            return 0
        self._cap_refused = False
        return max(0, self.limits.tokens - held)

    def _enqueued(self) -> int:
        """Tokens the open batches of these books hold against the cap."""
        total = 0
        for book in self.books:
            current = book.job.store.read()
            for record in bs.open_records(current) if current else ():
                if record.status not in bs.ENDED:
                    total += record.tokens
        return total

    def _submit_file(self, book: _Book, items: list[_Planned]) -> None:
        ref = secrets.token_hex(8)
        planned = {
            p.number: (
                p.token,
                tuple(mf.BatchRequest(c, k, ref) for c, k, _, _ in p.lines),
            )
            for p in items
        }
        tokens = sum(t for p in items for *_, t in p.lines)
        record = mf.BatchRecord(ref, created_at=self.clock(), tokens=tokens, owner=self.owner)
        now = self.clock()
        taken = book.job.store.transact(
            lambda m: bs.submit(m, planned, [record], now, self.max_attempts)
        )
        if not taken:
            return
        kept = set(taken)
        data = b"".join(line for p in items if p.number in kept for _, _, line, _ in p.lines)
        local = Path(book.job.out_dir) / FILES_DIR / f"{ref}.jsonl"
        local.parent.mkdir(exist_ok=True)
        write_atomic(local, data)
        current = book.job.store.read()
        assert current is not None
        sent = bs.record(current, ref)
        if sent is not None:
            self._sending(book, sent)

    # --- --batch-api-then-live ---------------------------------------------------------------

    def _followup(self, planned: _Planned) -> bool:
        current = planned.book.job.store.read()
        return current is not None and current.entry(planned.number).attempts > 0

    def _only_followups(self) -> bool:
        """No batch open and what is left needs a second round: time to go live."""
        for book in self.books:
            current = book.job.store.read()
            if current is not None and bs.open_records(current):
                return False
        return True

    def go_live(self, sink: EventSink) -> None:
        """The chapters a follow-up batch would carry, done live, in this process, over the
        replies on file (only what is missing is asked)."""
        for book in self.books:
            store = book.job.store
            current = store.read()
            if current is None:
                continue
            refs = [q.batch for e in bs.ready(current, book.job.wanted) for q in e.batch or ()]
            store.transact(lambda m, refs=refs: bs.give_back(m, refs))
            # Built as the batch requests were, so that the replies on file match them.
            analyzer = make_analyzer(
                self.settings.provider, book.job.book, self._pacer(book, sink), hosted=True
            )
            assert isinstance(analyzer, OpenAIAnalyzer)
            replay = ReplayAnalyzer.over(analyzer, book.replies.load())
            replay.live = True
            runner._run_here(book.job.spec, store, sink, book.job.book, replay)

    def _pacer(self, book: _Book, sink: EventSink) -> SharedPace | None:
        """The pace every process on the key shares, for the requests sent live (as a
        worker opens it: `worker._prepare`)."""
        spec, settings = book.job.spec, self.settings
        if settings.limits is None:
            return None
        return open_pacer(
            Path(spec.pace_dir or spec.out_dir),
            settings.limits,
            redis_url=settings.redis_url,
            digest=pace_digest(settings.provider.base_url, settings.provider.api_key),
            max_wait=settings.max_wait,
            server=self.server,
            notice=lambda line: sink(Notice(line)),
        )


def _seen(batch: Any) -> dict[str, Any]:
    """A BatchRecord's fields as the server's Batch object states them."""
    counts = batch.request_counts
    listed = (batch.errors.data if batch.errors else None) or []
    changes: dict[str, Any] = {
        "status": batch.status,
        "completed": counts.completed if counts else 0,
        "failed": counts.failed if counts else 0,
    }
    if listed:
        code, message = listed[0].code, listed[0].message or listed[0].code or ""
        changes["error"] = f"{code}: {message}" if code else message
    return changes


def cancel_batches(
    paths: list[Path | str], out_dir: Path | None, config: ProviderConfig
) -> Iterator[tuple[Path, tuple[int, int]]]:
    """`imaginize batch cancel`: each book's open batches cancelled on the server (those not
    sent yet given up), their chapters back to pending. Per book folder: (batches
    cancelled, chapters given back)."""
    client = openai_client.build(config.api_key, config.base_url, 120.0)
    books = runner.expand_books(paths)
    folders = runner.library_out_dirs(books, out_dir)
    if len(paths) == 1 and not Path(paths[0]).is_dir():
        folders = [Path(out_dir or runner.default_out_dir(books[0]))]
    for folder in folders:
        store = ManifestStore(folder)
        current = store.read()
        if current is None:
            continue
        cancelled = 0
        refs = []
        for record in bs.open_records(current):
            if record.id is not None and record.status not in bs.ENDED:
                client.batches.cancel(record.id)
                cancelled += 1
            refs.append(record.ref)

        def change(m: mf.Manifest, refs: list[str] = refs) -> tuple[mf.Manifest, list[int]]:
            for ref in refs:
                now = bs.record(m, ref)
                ended = now is not None and now.status in bs.ENDED
                m = bs.update_record(
                    m, ref, status=now.status if ended and now else "cancelled", ingested=True
                )
            return bs.give_back(m, refs, "its batch was cancelled")

        returned = store.transact(change)
        yield folder, (cancelled, len(returned))


def run_batch_books(
    paths: list[Path | str],
    options: runner.RunOptions,
    batch: BatchOptions,
    sink: EventSink = ignore,
) -> LibraryFinished:
    """`run.run_books` through the Batch API: the same books, folders and summaries."""
    if options.settings.provider.kind is not ProviderKind.OPENAI:
        raise ConfigError("--batch-api needs an OpenAI-compatible server (an API key)")
    jobs: list[runner._Prepared] = []
    skipped: dict[Path, str] = {}
    books = runner.expand_books(paths)
    folders = runner.library_out_dirs(books, options.out_dir)
    if len(paths) == 1 and not Path(paths[0]).is_dir():  # one book: where run_book writes
        folders = [Path(options.out_dir or runner.default_out_dir(books[0]))]
    for path, out_dir in zip(books, folders, strict=True):
        try:
            jobs.append(runner._join(path, out_dir, options, sink))
        except (BookError, ManifestError) as exc:
            skipped[path] = str(exc)
            sink(Notice(f"skipping {exc}"))
    finished: list[RunFinished] = []
    try:
        if jobs:
            flow = BatchRun(jobs, options, batch, sink)
            done = flow.run()
            if not done and batch.then_live and batch.wait:
                flow.go_live(sink)
    finally:
        finished = [runner._finish(job, sink) for job in jobs]
    for one in finished:
        sink(one)
    library = LibraryFinished(tuple(finished), skipped)
    if len(paths) != 1 or Path(paths[0]).is_dir():  # as run_books says it; run_book does not
        sink(library)
    return library
