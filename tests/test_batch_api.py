"""The Batch API (`--batch-api`): the test server's /v1/files and /v1/batches, the batch
files imaginize builds and ingests, and whole runs against the server over real HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import openai
import pytest

from imaginize.analysis.openai.batch import (
    Limits,
    Reply,
    ReplyFile,
    canonical,
    request_key,
    request_line,
    split_files,
)
from imaginize.analysis.openai.server import ReplyFormat
from imaginize.analysis.providers import ProviderConfig, ProviderKind, limits_for
from imaginize.coordination import batch_state as bs
from imaginize.coordination import manifest as mf
from imaginize.coordination.store import MANIFEST_NAME, ManifestStore
from imaginize.errors import ConfigError
from imaginize.events import Notice
from imaginize.run import RunOptions, run_book
from imaginize.workers.batch_run import BatchOptions, cancel_batches, run_batch_books
from tests.epubs import build_epub, paragraphs
from tests.fake_openai import (
    FakeOpenAI,
    FakeOpenAIProcess,
    error,
    prompt_text,
    read_log,
    reply,
)
from tests.replies import answer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "the-lanternfruit-orchard.epub"

# --- the test server's Batch API ------------------------------------------------------------


def _line(custom_id: str, text: str = "hi", max_tokens: int = 10) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "fake-model",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
        },
    }


def _submit(client: openai.OpenAI, lines: list[dict[str, Any]]) -> Any:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def _until_ended(client: openai.OpenAI, batch_id: str, timeout: float = 5.0) -> tuple[Any, list]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch, seen
        time.sleep(0.01)
    raise TimeoutError(seen)


def _jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=0)


@pytest.mark.slow
def test_batch_states_advance_and_replies_come_from_the_chat_source(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.script(batch_timing=[0.1, 0.1, 0.1], responder=lambda body: "answer")
    fake_openai.enqueue(reply("first"))
    batch = _submit(client, [_line("a"), _line("b")])
    assert batch.status == "validating"
    ended, seen = _until_ended(client, batch.id)
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert ended.request_counts.completed == 2 and ended.error_file_id is None
    out = {line["custom_id"]: line for line in _jsonl(client, ended.output_file_id)}
    texts = {k: v["response"]["body"]["choices"][0]["message"]["content"] for k, v in out.items()}
    assert texts == {"a": "first", "b": "answer"}  # queue first, then the responder
    created = [r for r in fake_openai.requests if r["path"] == "/v1/batches"]
    assert created[0]["custom_ids"] == ["a", "b"]


@pytest.mark.slow
def test_partial_failures_go_to_the_error_file(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.script(batch_timing=[0, 0, 0])
    fake_openai.enqueue(reply("ok"), error(500), reply("ok"))
    ended, _ = _until_ended(client, _submit(client, [_line(c) for c in "abc"]).id)
    assert ended.status == "completed"
    assert (ended.request_counts.completed, ended.request_counts.failed) == (2, 1)
    errors = _jsonl(client, ended.error_file_id)
    assert [e["custom_id"] for e in errors] == ["b"]
    assert errors[0]["response"]["status_code"] == 500


def test_an_expired_batch_answers_part_and_lists_the_rest(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.script(batch_timing=[0, 0, 0], batch_expire=1)
    ended, _ = _until_ended(client, _submit(client, [_line(c) for c in "abcd"]).id)
    assert ended.status == "expired"
    assert [o["custom_id"] for o in _jsonl(client, ended.output_file_id)] == ["a", "b"]
    errors = _jsonl(client, ended.error_file_id)
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("c", "batch_expired"),
        ("d", "batch_expired"),
    ]
    again, _ = _until_ended(client, _submit(client, [_line("e")]).id)
    assert again.status == "completed"  # only the next one expired


@pytest.mark.slow
def test_a_batch_past_the_enqueued_token_cap_fails_validation(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    # Each line: ceil(2 / 4) = 1 prompt token + 10 of output cap = 11 tokens enqueued.
    fake_openai.script(batch_timing=[5, 5, 5], batch_token_cap=30)
    first = _submit(client, [_line("a"), _line("b")])
    assert first.status == "validating"
    second = _submit(client, [_line("c")])
    assert second.status == "failed"
    assert second.errors.data[0].code == "token_limit_exceeded"
    assert client.batches.cancel(first.id).status == "cancelled"
    assert _submit(client, [_line("c")]).status == "validating"  # room again


def test_a_server_without_the_batch_api_answers_404(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.script(batch_api=False)
    with pytest.raises(openai.NotFoundError):
        client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_x")


# --- the manifest's batch fields and transitions ---------------------------------------------


def _manifest(chapters: int = 3) -> mf.Manifest:
    return mf.new_manifest(
        "/b.epub", "ab" * 32, "B", [(n, f"C{n}") for n in range(1, chapters + 1)], 1.0
    )


def _requests(number: int, ref: str, count: int = 1) -> tuple[mf.BatchRequest, ...]:
    return tuple(
        mf.BatchRequest(f"x-c{number}-k{k}-a1", f"key{number}.{k}", ref) for k in range(count)
    )


def test_batch_fields_round_trip_and_manifests_without_them_load() -> None:
    plain = _manifest()
    data = plain.to_json()
    assert "batches" not in data and all("batch" not in c for c in data["chapters"])
    assert mf.Manifest.from_json(json.loads(json.dumps(data))) == plain
    record = mf.BatchRecord("r1", "in_progress", "batch_1", "file-1", 2, 900, 5.0, None, 1, 0)
    batched, _ = bs.submit(plain, {1: (0, _requests(1, "r1", 2))}, [record], 2.0, 3)
    again = mf.Manifest.from_json(json.loads(json.dumps(batched.to_json())))
    assert again == batched
    assert again.entry(1).status is mf.Status.BATCHED
    assert again.entry(1).batch == _requests(1, "r1", 2)
    assert again.batches == (replace(record, requests=2),)
    with pytest.raises(ValueError, match=r"chapters\[0\]: batch\[0\]: customId: missing"):
        broken = batched.to_json()
        broken["chapters"][0]["batch"] = [{"key": "k", "batch": "r1"}]
        mf.Manifest.from_json(broken)


def test_the_batches_are_written_as_journal_lines_and_read_back(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    store.join(book_path="/b.epub", sha256="ab" * 32, title="B", chapters=[(1, "C1"), (2, "C2")])
    reader = ManifestStore(tmp_path)
    assert reader.read() is not None
    snapshot = (tmp_path / MANIFEST_NAME).read_bytes()
    record = mf.BatchRecord("r1", owner="me")
    store.transact(lambda m: bs.submit(m, {1: (0, _requests(1, "r1"))}, [record], 2.0, 3))
    store.transact(lambda m: (bs.update_record(m, "r1", id="batch_9", status="validating"), None))
    # Lines, not a snapshot of the whole book each time (10,000 chapters: 3.4 MB to write
    # and parse again, three times a round).
    assert (tmp_path / MANIFEST_NAME).read_bytes() == snapshot
    journal = (tmp_path / MANIFEST_NAME).with_suffix(".log").read_text().splitlines()
    assert len(journal) == 3 and '"batches"' in journal[2]
    seen = reader.read()  # a reader that had the old version: the lines applied
    assert seen is not None and [(r.id, r.status) for r in seen.batches] == [
        ("batch_9", "validating")
    ]
    store.transact(lambda m: (bs.update_record(m, "r1", ingested=True), None))
    assert reader.read() == store.read()
    store.compact()
    fresh = ManifestStore(tmp_path).read()
    assert fresh == reader.read()
    store.transact(lambda m: (bs.update_record(m, "r1", ingested=False), None))
    fresh = ManifestStore(tmp_path).read()
    assert fresh is not None
    assert [(r.ref, r.id, r.status, r.requests) for r in fresh.batches] == [
        ("r1", "batch_9", "validating", 1)
    ]
    assert fresh.entry(1).status is mf.Status.BATCHED
    assert mf.claim(fresh, "w", 3.0)[1].number == 2  # a batched chapter is nobody's to claim


def test_a_chapter_planned_by_two_processes_is_batched_once() -> None:
    start = _manifest()
    # Both planned chapters 1 and 2 from the same version; the first records them.
    first, taken = bs.submit(
        start, {1: (0, _requests(1, "a")), 2: (0, _requests(2, "a"))}, [mf.BatchRecord("a")], 2.0, 3
    )
    assert taken == [1, 2]
    second, again = bs.submit(
        first, {1: (0, _requests(1, "b")), 3: (0, _requests(3, "b"))}, [mf.BatchRecord("b")], 2.0, 3
    )
    assert again == [3]
    assert [(r.ref, r.requests) for r in second.batches] == [("a", 2), ("b", 1)]
    assert second.entry(1).batch == _requests(1, "a")


def test_batch_files_are_as_few_as_the_limits_allow() -> None:
    lines = [(b"x" * 10, 100)] * 10
    assert split_files(lines, Limits(requests=50, bytes=10_000, tokens=10_000)) == [list(range(10))]
    assert split_files(lines, Limits(requests=4, bytes=10_000, tokens=10_000)) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    assert split_files(lines, Limits(requests=50, bytes=35, tokens=10_000))[0] == [0, 1, 2]
    assert split_files(lines, Limits(requests=50, bytes=10_000, tokens=250))[0] == [0, 1]
    # Open batches hold tokens: only what fits the room is sent now.
    assert split_files(lines, Limits(tokens=10_000), room=350) == [[0, 1, 2]]


# --- whole runs against the test server -----------------------------------------------------

FAST = BatchOptions(poll=0.02)
STORY = (
    "<p>The red kite rose over the green hill while Mara ran below with the string.</p>"
    "<p>At dusk the lanterns of the village glowed amber along the grey harbour wall.</p>"
)


def _shelf(tmp_path: Path) -> Path:
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    shutil.copy(SAMPLE, shelf / "a-orchard.epub")
    build_epub(shelf / "b-kites.epub", [(f"Chapter {n}", STORY) for n in (1, 2, 3)], title="Kites")
    build_epub(
        shelf / "c-harbour.epub",
        [("Arrival", STORY.replace("kite", "boat")), ("Storm", STORY.replace("red", "black"))],
        title="Harbour",
    )
    return shelf


def _options(server: FakeOpenAI | str, out_dir: Path, **named: Any) -> RunOptions:
    url = server if isinstance(server, str) else server.url
    provider = ProviderConfig(ProviderKind.OPENAI, "fake-model", api_key="test", base_url=url)
    return RunOptions.of(out_dir=out_dir, provider=provider, **named)


def _created(requests: list[dict[str, Any]]) -> list[list[str]]:
    """The custom_ids of each batch created, in order (a create refused made none)."""
    return [
        r["custom_ids"]
        for r in requests
        if r["path"] == "/v1/batches" and r["method"] == "POST" and r["status"] == 200
    ]


def _chapters_sent(requests: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(book, chapter, attempt) of every request in every batch created."""
    found = []
    for ids in _created(requests):
        for custom in ids:
            match = re.fullmatch(r"([0-9a-f]+)-c(\d+)-k\d+-a(\d+)", custom)
            assert match, custom
            found.append(match.groups())
    return found


def _folder(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _counted(body: Any) -> dict[str, Any]:
    """`answer` with its usage stated: a streamed live reply and a batch reply then report
    the same tokens (the server counts a streamed reply by its pieces otherwise)."""
    step = answer(body)
    usage = {"prompt_tokens": len(prompt_text(body)) // 4, "completion_tokens": 300}
    return step | {"usage": usage}


@pytest.mark.slow
def test_three_books_through_the_batch_api_match_a_live_run(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(responder=_counted, batch_timing=[0.02, 0.02, 0.02])
    shelf = _shelf(tmp_path)
    library = run_batch_books([shelf], _options(fake_openai, tmp_path / "batch"), FAST)
    assert [(b.completed, b.total, b.failures) for b in library.books] == [
        (8, 8, {}),
        (3, 3, {}),
        (2, 2, {}),
    ]
    sent = _chapters_sent(fake_openai.requests)
    assert len(sent) == 13 and len(set(sent)) == 13
    assert len(_created(fake_openai.requests)) == 3  # one file per book
    assert not [r for r in fake_openai.requests if r["endpoint"] == "chat"]
    for book in sorted(shelf.glob("*.epub")):
        out = tmp_path / "live" / f"imaginize_{book.stem}"
        run_book(book, _options(fake_openai, out, in_process=True))
        assert _folder(tmp_path / "batch" / f"imaginize_{book.stem}") == _folder(out)


@pytest.mark.slow
def test_failed_and_unusable_replies_go_in_a_follow_up_batch(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(responder=answer, batch_timing=[0, 0, 0])
    # The file lists the chapters in order: chapter 1's request fails, chapter 2's reply is
    # not JSON (a repair request goes in the next batch), chapter 3 expires... no: answered.
    fake_openai.enqueue(error(500), reply("I cannot answer in JSON, sorry."))
    out = tmp_path / "out"
    library = run_batch_books([SAMPLE], _options(fake_openai, out), FAST)
    assert library.books[0].completed == 8
    rounds = _created(fake_openai.requests)
    assert len(rounds) == 2
    assert sorted(c.split("-", 1)[1] for c in rounds[1]) == ["c1-k0-a2", "c2-k0-a2"]
    second = [r for r in fake_openai.requests if r["path"] == "/v1/files" and r["method"] == "POST"]
    assert len(second) == 2
    manifest = ManifestStore(out).read()
    assert manifest is not None
    assert [e.attempts for e in manifest.chapters] == [2, 2, 1, 1, 1, 1, 1, 1]
    assert all(e.batch is None for e in manifest.chapters)


@pytest.mark.slow
def test_the_repair_request_carries_the_unusable_reply(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(responder=answer, batch_timing=[0, 0, 0])
    fake_openai.enqueue(reply("no json here"))
    book = build_epub(tmp_path / "k.epub", [("Chapter 1", STORY)], title="Kites")
    run_batch_books([book], _options(fake_openai, tmp_path / "out"), FAST)
    uploads = fake_openai.batches.files
    second = [json.loads(line) for line in uploads["file-fake3"]["data"].splitlines()]
    messages = second[0]["body"]["messages"]
    assert messages[-2] == {"role": "assistant", "content": "no json here"}
    assert "could not be used" in messages[-1]["content"]


@pytest.mark.slow
def test_an_expired_batch_is_sent_again(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(responder=answer, batch_timing=[0, 0, 0], batch_expire=1)
    library = run_batch_books([SAMPLE], _options(fake_openai, tmp_path / "out"), FAST)
    assert library.books[0].completed == 8
    rounds = _created(fake_openai.requests)
    assert [len(r) for r in rounds] == [8, 4]  # half expired, and only that half again
    assert {c.split("-")[1] for c in rounds[1]} == {"c5", "c6", "c7", "c8"}


@pytest.mark.slow
def test_the_token_cap_splits_files_and_holds_them_back(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # A chapter's request holds ~4,400-4,900 tokens (prompt + output cap): 3 fit in 15,000.
    fake_openai.script(responder=answer, batch_timing=[0.02, 0.02, 0.02], batch_token_cap=15_000)
    notices: list[str] = []
    options = replace(FAST, token_cap=15_000)
    library = run_batch_books(
        [SAMPLE],
        _options(fake_openai, tmp_path / "out"),
        options,
        lambda e: notices.append(e.message) if isinstance(e, Notice) else None,
    )
    assert library.books[0].completed == 8
    sizes = [len(r) for r in _created(fake_openai.requests)]
    assert len(sizes) >= 3 and max(sizes) <= 3 and sum(sizes) == 8
    assert not [n for n in notices if "refused" in n]  # never past the server's cap


@pytest.mark.slow
def test_a_batch_refused_for_the_token_cap_is_sent_again_smaller(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # Our cap is far above the server's (10,000 tokens, about two chapters): the whole book
    # in one file is refused; the run halves what it sends at once until the server takes it.
    fake_openai.script(responder=answer, batch_timing=[0.02, 0.02, 0.02], batch_token_cap=10_000)
    notices: list[str] = []
    library = run_batch_books(
        [SAMPLE],
        _options(fake_openai, tmp_path / "out"),
        replace(FAST, token_cap=10_000_000),
        lambda e: notices.append(e.message) if isinstance(e, Notice) else None,
    )
    assert (library.books[0].completed, library.books[0].failures) == (8, {})
    refused = [n for n in notices if "refused for the enqueued-token cap" in n]
    assert refused and "token_limit_exceeded" in refused[0]
    states = [b["status"] for b in fake_openai.batches.batches.values()]
    assert states.count("completed") >= 4 and "failed" in states
    sent = _chapters_sent([r for r in fake_openai.requests if r.get("custom_ids")])
    accepted = [
        ids
        for ids, b in zip(
            _created(fake_openai.requests), fake_openai.batches.batches.values(), strict=True
        )
        if b["status"] == "completed"
    ]
    assert sorted(int(c.split("-c")[1].split("-")[0]) for ids in accepted for c in ids) == list(
        range(1, 9)
    )
    assert len(sent) > 8  # the refused files' requests were sent again, in accepted files


def test_a_server_without_the_batch_api_is_refused_before_any_upload(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(batch_api=False)
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:\d+ has no Batch API"):
        run_batch_books([SAMPLE], _options(fake_openai, tmp_path / "out"), FAST)
    assert [r["method"] for r in fake_openai.requests] == ["GET"]


@pytest.mark.slow
def test_no_wait_then_a_re_run_sends_nothing_twice(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(responder=answer, batch_timing=[0.3, 0.3, 0.1])
    out = tmp_path / "out"
    first = run_batch_books([SAMPLE], _options(fake_openai, out), replace(FAST, wait=False))
    assert (first.books[0].completed, first.books[0].unfinished) == (0, 8)
    manifest = ManifestStore(out).read()
    assert manifest is not None
    assert {e.status for e in manifest.chapters} == {mf.Status.BATCHED}
    # Another terminal meanwhile, and then the first again: both poll, neither sends.
    run_batch_books([SAMPLE], _options(fake_openai, out), replace(FAST, wait=False))
    done = run_batch_books([SAMPLE], _options(fake_openai, out), FAST)
    assert done.books[0].completed == 8
    sent = _chapters_sent(fake_openai.requests)
    assert len(sent) == 8 and len(set(sent)) == 8


@pytest.mark.slow
def test_batch_cancel_gives_the_chapters_back(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(responder=answer, batch_timing=[5, 5, 5])
    out = tmp_path / "out"
    run_batch_books([SAMPLE], _options(fake_openai, out), replace(FAST, wait=False))
    provider = _options(fake_openai, out).settings.provider
    assert list(cancel_batches([SAMPLE], out, provider)) == [(out, (1, 8))]
    manifest = ManifestStore(out).read()
    assert manifest is not None
    assert {e.status for e in manifest.chapters} == {mf.Status.PENDING}
    assert [e.attempts for e in manifest.chapters] == [0] * 8
    assert [(r.status, r.ingested) for r in manifest.batches] == [("cancelled", True)]
    assert fake_openai.batches.batches["batch_fake1"]["status"] == "cancelled"


# --- kill -9 at any moment, then re-run ------------------------------------------------------


def _cli(url: str, out: Path, home: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "imaginize",
        str(SAMPLE),
        "-o",
        str(out),
        "--base-url",
        url,
        "--api-key",
        "test",
        "--model",
        "fake-model",
        "--batch-api",
        "-q",
    ]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OPENROUTER_"))}
    return env | {"HOME": str(home), "IMAGINIZE_BATCH_POLL": "0.05", "PYTHONPATH": str(ROOT)}


def _wait_for(log: Path, test: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(test(r) for r in read_log(log)):
            return
        time.sleep(0.02)
    raise TimeoutError(f"no such request in {log}")


@pytest.mark.parametrize(
    ("phase", "seen"),
    [
        ("upload", lambda r: r["path"] == "/v1/files" and r["method"] == "POST"),
        ("create", lambda r: r["path"] == "/v1/batches" and r["method"] == "POST"),
        ("content", lambda r: r["path"].endswith("/content")),
    ],
)
@pytest.mark.slow
def test_kill_9_at_any_step_then_a_re_run_sends_nothing_twice(
    phase: str, seen: Any, tmp_path: Path
) -> None:
    script = {
        "responder": "tests.replies:answer",
        "batch_timing": [0.02, 0.02, 0.02],
        "batch_delays": {phase: 30},  # the first such request is done, its answer held back
    }
    out = tmp_path / "out"
    with FakeOpenAIProcess(script, workdir=tmp_path / "server") as server:
        run = subprocess.Popen(
            _cli(server.url, out, tmp_path),
            env=_env(tmp_path),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(server.log_path, seen)
            os.kill(run.pid, signal.SIGKILL)
        finally:
            run.wait(timeout=30)
        assert run.returncode == -signal.SIGKILL
        again = subprocess.run(
            _cli(server.url, out, tmp_path),
            env=_env(tmp_path),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr
        requests = server.requests()
    sent = _chapters_sent(requests)
    assert sorted(int(c) for _, c, _ in sent) == list(range(1, 9))  # each chapter once
    assert sorted(p.name for p in (out / "chapters").glob("*.json")) == [
        f"{n:03d}.json" for n in range(1, 9)
    ]
    manifest = ManifestStore(out).read()
    assert manifest is not None
    assert {e.status for e in manifest.chapters} == {mf.Status.COMPLETED}
    assert not list((out / ".imaginize.batches").glob("*.jsonl"))


# --- the command line -------------------------------------------------------------------------


def _imaginize(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imaginize", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(home),
        cwd=ROOT,
    )


@pytest.mark.slow
def test_cli_a_server_without_batches_is_one_line_and_exit_2(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(batch_api=False)
    server = ["--base-url", fake_openai.url, "--api-key", "test", "--model", "fake-model"]
    done = _imaginize(SAMPLE, "-o", tmp_path / "out", *server, "--batch-api", home=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == [
        f"imaginize: error: 127.0.0.1:{fake_openai.port} has no Batch API (/v1/batches "
        "answered 404); run without --batch-api"
    ]
    assert not [r for r in fake_openai.requests if r["method"] == "POST"]


@pytest.mark.slow
def test_cli_no_wait_status_and_estimate(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(responder=answer, batch_timing=[30, 30, 30])
    server = ["--base-url", fake_openai.url, "--api-key", "test", "--model", "gpt-4o-mini"]
    out = ["-o", tmp_path / "out"]
    sent = _imaginize(SAMPLE, *out, *server, "--batch-api", "--no-wait", home=tmp_path)
    assert sent.returncode == 3, sent.stderr  # incomplete: re-run to resume
    # A line of progress, not a warning.
    assert "imaginize: The Lanternfruit Orchard: batch batch_fake1 submitted: 8 requests" in (
        sent.stderr
    )
    status = _imaginize("status", SAMPLE, *out, home=tmp_path)
    assert "8 batched" in status.stdout
    assert re.search(r"batch batch_fake1\s+validating\s+0/8 done", status.stdout)
    as_json = json.loads(_imaginize("status", SAMPLE, *out, "--json", home=tmp_path).stdout)
    assert [(b["id"], b["status"], b["requests"]) for b in as_json["batches"]] == [
        ("batch_fake1", "validating", 8)
    ]
    assert as_json["totals"]["batched"] == 8
    estimate = _imaginize(SAMPLE, *server, "--estimate", "--batch-api", home=tmp_path)
    assert estimate.returncode == 0, estimate.stderr
    rows = dict(
        re.match(r"\s+(batch [a-z]+|enqueued tokens)\s+(.*)", line).groups()  # type: ignore[union-attr]
        for line in estimate.stdout.splitlines()
        if re.match(r"\s+(batch [a-z]+|enqueued tokens)\s", line)
    )
    assert rows["batch requests"].startswith("8 ")
    assert rows["batch files"] == "1"
    live = re.search(r"cost\s+\$([0-9.]+)", estimate.stdout)
    batch = re.search(r"\$([0-9.]+)", rows["batch cost"])
    assert live and batch and float(batch.group(1)) == pytest.approx(float(live.group(1)) / 2, 0.01)
    cancel = _imaginize("batch", "cancel", SAMPLE, *out, *server[:4], home=tmp_path)
    assert cancel.returncode == 0, cancel.stderr
    assert "1 batch cancelled, 8 chapters back to pending" in cancel.stdout


@pytest.mark.slow
def test_then_live_does_the_follow_up_round_live(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake_openai.script(responder=answer, batch_timing=[0, 0, 0])
    fake_openai.enqueue(reply("no json here"))  # chapter 1's batch reply needs a repair
    out = tmp_path / "out"
    options = _options(fake_openai, out)
    paced = _options(fake_openai, out, limits=limits_for(options.settings.provider, "paid"))
    library = run_batch_books([SAMPLE], paced, replace(FAST, then_live=True))
    assert library.books[0].completed == 8
    assert len(_created(fake_openai.requests)) == 1  # no second batch
    chats = [r for r in fake_openai.requests if r["endpoint"] == "chat"]
    assert len(chats) == 1  # only the repair, live; the first reply came from the batch
    messages = chats[0]["body"]["messages"]
    assert messages[-2] == {"role": "assistant", "content": "no json here"}
    # The live request went through the key's shared pace, as a worker's does.
    assert list((tmp_path / "cache" / "imaginize" / "pace").glob("*/*"))


@pytest.mark.slow
def test_a_live_run_leaves_batched_chapters_to_the_batch_run(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(responder=answer, batch_timing=[30, 30, 30])
    server = ["--base-url", fake_openai.url, "--api-key", "test", "--model", "fake-model"]
    out = ["-o", tmp_path / "out"]
    _imaginize(SAMPLE, *out, *server, "--batch-api", "--no-wait", home=tmp_path)
    # Without --batch-api: nothing to claim, nothing to wait for; the chapters stay batched.
    live = _imaginize(SAMPLE, *out, *server, "--chapters", "1-8", home=tmp_path)
    assert live.returncode == 3, live.stderr
    assert "8 chapters or images were left unfinished" in live.stderr
    assert not [r for r in fake_openai.requests if r["endpoint"] == "chat"]
    manifest = ManifestStore(tmp_path / "out").read()
    assert manifest is not None
    assert {e.status for e in manifest.chapters} == {mf.Status.BATCHED}


@pytest.mark.parametrize("phase", ["upload", "create"])
@pytest.mark.slow
def test_a_refused_upload_or_create_is_sent_again_next_round(
    phase: str, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(responder=answer, batch_timing=[0, 0, 0], batch_errors={phase: 503})
    notices: list[str] = []
    library = run_batch_books(
        [SAMPLE],
        _options(fake_openai, tmp_path / "out"),
        FAST,
        lambda e: notices.append(e.message) if isinstance(e, Notice) else None,
    )
    assert library.books[0].completed == 8
    assert any("did not take it" in n for n in notices)
    sent = _chapters_sent(fake_openai.requests)
    assert len(sent) == 8 and len(set(sent)) == 8


def test_batch_api_without_a_server_is_refused_before_any_folder(tmp_path: Path) -> None:
    offline = RunOptions.of(out_dir=tmp_path / "out")
    with pytest.raises(ConfigError, match="--batch-api needs an OpenAI-compatible server"):
        run_batch_books([SAMPLE], offline, FAST)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_chapter_in_chunks_and_a_cut_off_reply_match_live(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # Chapter 1 is cut into several chunks (one request each, in one batch); the first
    # reply stops at the token limit, so that chunk is asked for again in halves, in a
    # follow-up batch, as live mode asks again at once.
    fake_openai.script(responder=_counted, batch_timing=[0, 0, 0])
    book = build_epub(
        tmp_path / "long.epub",
        [("Chapter 1", paragraphs(120)), ("Chapter 2", STORY)],
        title="Long",
    )
    cut = reply("{", finish_reason="length", usage={"prompt_tokens": 9, "completion_tokens": 9})
    fake_openai.enqueue(cut)
    batch_out, live_out = tmp_path / "batch", tmp_path / "live"
    done = run_batch_books([book], _options(fake_openai, batch_out, max_chunk_tokens=400), FAST)
    assert (done.books[0].completed, done.books[0].failures) == (2, {})
    rounds = _created(fake_openai.requests)
    first = [c.split("-", 1)[1] for c in rounds[0]]
    assert len([c for c in first if c.startswith("c1-")]) > 2  # chunks, each its request
    assert [c.split("-", 1)[1] for c in rounds[1]] == ["c1-k0-a2", "c1-k1-a2"]  # the halves
    fake_openai.enqueue(cut)
    run_book(book, _options(fake_openai, live_out, max_chunk_tokens=400, in_process=True))
    assert _folder(batch_out) == _folder(live_out)


@pytest.mark.slow
def test_ctrl_c_while_waiting_then_a_re_run_finishes(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(responder=answer, batch_timing=[3, 1, 0])
    server = ["--base-url", fake_openai.url, "--api-key", "test", "--model", "fake-model"]
    args = [sys.executable, "-m", "imaginize", SAMPLE, "-o", tmp_path / "out", *server]
    waiting = subprocess.Popen(
        [*map(str, args), "--batch-api"],
        env=_env(tmp_path),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fake_openai.wait_for_requests(3, timeout=30)  # the check, the upload, the create
        deadline = time.monotonic() + 30
        while not _created(fake_openai.requests) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        waiting.send_signal(signal.SIGINT)
        _, stderr = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 130, stderr
    progress = [line for line in stderr.splitlines() if ": batch " in line]
    assert progress[0].endswith("batch batch_fake1 submitted: 8 requests, 35,151 tokens enqueued")
    again = _imaginize(*args[3:], "--batch-api", home=tmp_path)
    assert again.returncode == 0, again.stderr
    sent = _chapters_sent(fake_openai.requests)
    assert len(sent) == 8 and len(set(sent)) == 8


@pytest.mark.slow
def test_force_asks_again_instead_of_replaying_old_replies(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(responder=answer, batch_timing=[0, 0, 0])
    out = tmp_path / "out"
    run_batch_books([SAMPLE], _options(fake_openai, out), FAST)
    assert len(_chapters_sent(fake_openai.requests)) == 8
    fake_openai.script(responder=lambda body: answer(body) | {"usage": {"completion_tokens": 7}})
    again = run_batch_books([SAMPLE], _options(fake_openai, out, force=True), FAST)
    assert again.books[0].completed == 8
    assert len(_chapters_sent(fake_openai.requests)) == 16  # all 8 sent again
    results = [json.loads(p.read_text()) for p in sorted((out / "chapters").glob("*.json"))]
    assert {r["usage"]["completionTokens"] for r in results} == {7}  # the new replies


def test_the_reply_file_keeps_only_chapters_in_flight(tmp_path: Path) -> None:
    replies = ReplyFile(tmp_path)
    replies.append([("k1", 1, Reply("a", "stop")), ("k2", 2, Reply("b", "stop"))])
    with replies.path.open("a") as torn:
        torn.write('{"key": "k3", "chap')  # a writer killed mid-line
    replies.append([("k4", 4, Reply("d", "stop"))])
    assert set(replies.load()) == {"k1", "k2", "k4"}
    assert replies.keep_only({2, 4}) == 2  # chapter 1's line and the damaged one
    assert set(replies.load()) == {"k2", "k4"}
    assert replies.load()["k4"] == Reply("d", "stop")


def test_batch_requests_are_built_for_the_hosted_api_even_on_a_local_url(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # The Batch API is OpenAI's hosted service: no quote choices (an enum of the chunk's
    # sentences) and no grammar bounds in the schema, though this server is on 127.0.0.1.
    assert "127.0.0.1" in fake_openai.url
    fake_openai.script(responder=answer, batch_timing=[5, 5, 5])
    out = tmp_path / "out"
    run_batch_books([SAMPLE], _options(fake_openai, out), replace(FAST, wait=False))
    uploaded = [f["data"] for f in fake_openai.batches.files.values()]
    bodies = [json.loads(line)["body"] for data in uploaded for line in data.splitlines()]
    assert len(bodies) == 8
    for body in bodies:
        schema = body["response_format"]["json_schema"]["schema"]
        assert "enum" not in schema["properties"]["scenes"]["items"]["properties"]["quote"]
        assert not re.search(r'"(maxItems|maxLength)"', json.dumps(schema))
        # Exactly what api.openai.com is sent in live mode.
        assert body["response_format"] == ReplyFormat.JSON_SCHEMA.response_format()


def test_a_batch_line_carries_the_body_its_key_digests() -> None:
    params = {"model": "m", "messages": [{"role": "user", "content": 'é "x"\n}'}], "max_tokens": 3}
    body = canonical(params)
    line = request_line("abc-c1-k0-a1", body)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed = json.loads(line)
    assert parsed == {
        "custom_id": "abc-c1-k0-a1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": params,
    }
    assert request_key(parsed["body"]) == request_key(params, body)


def test_the_reply_file_is_read_on_from_where_it_was(tmp_path: Path) -> None:
    mine, other = ReplyFile(tmp_path), ReplyFile(tmp_path)
    assert mine.load() == {}
    other.append([("k1", 1, Reply(error="HTTP 500: no reply"))])
    assert mine.load() == {"k1": Reply(error="HTTP 500: no reply")}
    with other.path.open("a") as torn:
        torn.write('{"key": "k2", "chap')  # a writer killed mid-line: not read yet
    assert set(mine.load()) == {"k1"}
    # The next writer ends the torn line (skipped) and appends; a reply after an error wins.
    other.append([("k1", 1, Reply("a", "stop")), ("k3", 3, Reply("c", "stop"))])
    assert mine.load() == {"k1": Reply("a", "stop"), "k3": Reply("c", "stop")}
    other.append([("k3", 3, Reply("again", "stop"))])  # a key filed twice keeps its first
    assert mine.load()["k3"] == Reply("c", "stop")
    other.keep_only({3})  # rewritten whole: read from its start
    assert mine.load() == {"k3": Reply("c", "stop")}
    other.path.unlink()
    assert mine.load() == {}
    loaded = mine.load()
    loaded["x"] = Reply("mine")  # a copy: the caller may keep or change it
    assert mine.load() == {}
