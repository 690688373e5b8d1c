"""A library spread over workers with RQ (`imaginize enqueue` / `worker` / `status --redis`).

Real OS processes: `imaginize worker`s against fakeredis's TCP server, and against a real
`redis-server` when one is on PATH; the offline analyzer, so no API key and no model server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from tests.epubs import build_epub
from tests.local_servers import free_port
from tests.test_cli import CLEAN_ENV, ROOT

pytest.importorskip("rq")
pytest.importorskip("fakeredis")

IMAGINIZE = [sys.executable, "-m", "imaginize"]
BOOKS = 5
CHAPTERS = 24
# A killed worker's book is back on the queue this many seconds after its last heartbeat.
REQUEUE_AFTER = "4"


def library(folder: Path, chapters: int = CHAPTERS) -> list[Path]:
    """Five small books, each chapter a few hundred words of the offline analyzer's fare."""
    folder.mkdir()
    text = (
        "<p>Mara lit the brass lantern by the harbour wall, and the red sails of the "
        "fishing boats glowed in the evening mist. Old Tobin watched from the pier.</p>"
    ) * 12
    return [
        build_epub(
            folder / f"book{n}.epub",
            [(f"Chapter {c}", text) for c in range(1, chapters + 1)],
            title=f"Book {n}",
        )
        for n in range(1, BOOKS + 1)
    ]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMAGINIZE, *args],
        capture_output=True,
        text=True,
        env=env or CLEAN_ENV,
        cwd=ROOT,
        timeout=120,
    )


def start_worker(url: str, out: Path, host: str, *args: str) -> subprocess.Popen[str]:
    """One `imaginize worker` as host `host` (the name status shows), 2 processes a book."""
    env = {**CLEAN_ENV, "IMAGINIZE_HOST": host, "XDG_CACHE_HOME": str(out.parent / host)}
    return subprocess.Popen(
        [*IMAGINIZE, "worker", "--redis", url, "-j", "2", "-o", str(out), "-q", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,  # kill -9 of the worker leaves its analysis processes
    )


def queue_status(url: str) -> list[dict[str, Any]]:
    result = cli("status", "--redis", url, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def chapters_of(out_dir: Path) -> list[mf.Entry]:
    manifest = ManifestStore(out_dir).read()
    return list(manifest.chapters) if manifest else []


def assert_all_done(books: list[Path], out: Path, wanted: int = CHAPTERS) -> None:
    for book in books:
        folder = out / f"imaginize_{book.stem}"
        done = [e.number for e in chapters_of(folder) if e.status is mf.Status.COMPLETED]
        assert done == list(range(1, wanted + 1)), folder
        assert len(list((folder / "chapters").glob("*.json"))) == wanted
        assert (folder / "Chapters.md").is_file()


def stop(workers: list[subprocess.Popen[str]]) -> list[str]:
    """SIGTERM (an idle worker stops at once), then their stderr."""
    errs = []
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            errs.append(worker.communicate(timeout=30)[1])
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            errs.append(worker.communicate()[1])
    return errs


@pytest.mark.slow
def test_two_workers_do_every_book_once(tmp_path: Path, redis_url: str) -> None:
    books = library(tmp_path / "books")
    out = tmp_path / "out"
    # --chapters travels with each book to the worker that runs it.
    queued = cli("enqueue", str(tmp_path / "books"), "--redis", redis_url, "--chapters", "1-20")
    assert queued.returncode == 0, queued.stderr
    assert queued.stdout.count("queued: ") == BOOKS
    again = cli("enqueue", str(books[0]), "--redis", redis_url)
    assert "already queued" in again.stdout  # the same book is not queued twice

    workers = [start_worker(redis_url, out, host, "--burst") for host in ("one", "two")]
    try:
        for worker in workers:
            worker.wait(timeout=180)
    finally:
        errs = stop(workers)
    assert [w.returncode for w in workers] == [0, 0], errs

    assert_all_done(books, out, wanted=20)
    # Every chapter claimed once: no book was run twice, nothing redone.
    for book in books:
        entries = chapters_of(out / f"imaginize_{book.stem}")
        assert {e.attempts for e in entries if e.number <= 20} == {1}
    taken = [line for err in errs for line in err.splitlines() if "imaginize worker: " in line]
    assert sorted(line.split(": ", 1)[1].split(" -> ")[0] for line in taken) == sorted(
        str(b.resolve()) for b in books
    )
    listed = queue_status(redis_url)
    assert sorted(b["state"] for b in listed) == ["finished"] * BOOKS
    assert {b["host"] for b in listed} <= {"one", "two"}
    table = cli("status", "--redis", redis_url)
    assert table.stdout.startswith("0 queued, 0 running, 5 finished, 0 failed"), table.stdout


@pytest.mark.slow
def test_a_worker_killed_mid_book_loses_no_book(tmp_path: Path, redis_url: str) -> None:
    books = library(tmp_path / "books", chapters=CHAPTERS)
    out = tmp_path / "out"
    assert cli("enqueue", str(tmp_path / "books"), "--redis", redis_url).returncode == 0
    requeue = ("--requeue-after", REQUEUE_AFTER)
    victim = start_worker(redis_url, out, "one", *requeue)

    def victims_book_half_done() -> Path | None:
        # Only worker one runs yet: a folder with some chapters done is its book.
        for folder in out.glob("imaginize_*"):
            done = len(list((folder / "chapters").glob("*.json")))
            if 1 <= done < CHAPTERS // 2:
                return folder
        return None

    workers = [victim]
    try:
        folder = wait_for(victims_book_half_done, 60, "worker one to be mid-book")
        victim.kill()  # kill -9 of the worker alone; its analysis processes notice and stop
        victim.wait(10)
        assert any(e.status is not mf.Status.COMPLETED for e in chapters_of(folder))
        workers.append(start_worker(redis_url, out, "two", *requeue))

        def all_finished() -> bool:
            listed = queue_status(redis_url)
            return len(listed) == BOOKS and all(b["state"] == "finished" for b in listed)

        wait_for(all_finished, 120, "every book to finish")
    finally:
        errs = stop(workers)
    assert_all_done(books, out)
    listed = queue_status(redis_url)
    held = next(str(b.resolve()) for b in books if folder.name == f"imaginize_{b.stem}")
    killed = next(b for b in listed if b["book"] == held)
    assert killed["host"] == "two", errs  # the book the killed worker held was rerun by two
    assert killed["tries_left"] == 1  # one of its three runs spent


@pytest.mark.slow
def test_a_wrong_redis_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    books = library(tmp_path / "books", chapters=1)
    for args in (
        ["enqueue", str(books[0])],
        ["worker", "--burst"],
        ["status"],
    ):
        for url, reason in (
            (f"redis://:hunter2@127.0.0.1:{free_port()}/0", "cannot use it"),
            ("http://127.0.0.1:6379", "not a Redis URL"),
        ):
            result = cli(*args, "--redis", url)
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "--redis" in lines[0] and reason in lines[0], lines
            assert "hunter2" not in result.stderr


@pytest.mark.slow
def test_without_the_extra_enqueue_says_what_to_install(tmp_path: Path) -> None:
    books = library(tmp_path / "books", chapters=1)
    # An interpreter where rq cannot be imported, as without `pip install 'imaginize[redis]'`.
    no_rq = (
        "import sys; sys.modules['rq'] = None; "
        "from imaginize.cli.entry import main; sys.exit(main())"
    )
    for args in (["enqueue", str(books[0])], ["worker"], ["status"]):
        result = subprocess.run(
            [sys.executable, "-c", no_rq, *args, "--redis", "redis://127.0.0.1:1/0"],
            capture_output=True,
            text=True,
            env=CLEAN_ENV,
            cwd=ROOT,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "imaginize: error: --redis needs redis and rq: install 'imaginize[redis]'"
        ]
