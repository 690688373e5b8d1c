"""Untrusted text on its way to a terminal or a file (imaginize/safetext.py): control
sequences and bidi overrides from titles, file names and servers are shown escaped in every
view, and an API key a server quotes back is masked wherever the error is printed or kept."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from rich.console import Console

from imaginize import safetext
from imaginize.analysis.openai import client as openai_client
from imaginize.analysis.openai.errors import status_error
from imaginize.cli.live import LiveProgress
from imaginize.cli.progress import PlainProgress
from imaginize.cli.status import StatusReport, render_status
from imaginize.coordination import manifest as mf
from imaginize.coordination.claims import record_failure
from imaginize.coordination.store import JOURNAL_NAME, MANIFEST_NAME, ManifestStore
from imaginize.errors import ProviderError
from imaginize.events import (
    BookProgress,
    ChapterFailed,
    ChapterFinished,
    ChapterRetry,
    ChapterSkipped,
    Event,
    ImageFinished,
    LibraryFinished,
    Notice,
    RunFinished,
    RunStarted,
)
from imaginize.guides.merge import BookInfo, ChapterInfo, render_contents
from imaginize.model import ChapterResult
from tests.epubs import build_epub, edit_member, opf_name
from tests.fake_openai import FakeOpenAI, error
from tests.test_cli import CLEAN_ENV, ROOT, SAMPLE, imaginize

# The manifest's snapshot and its journal (a failure is recorded in the latter).
MANIFEST_FILES = (MANIFEST_NAME, JOURNAL_NAME)

# What a hostile title or server message may carry: a screen clear, a window-title change
# ended by BEL, a carriage return that overwrites the line, the C1 CSI (one byte of ESC [),
# DEL, NUL, a right-to-left override and a bidi isolate, and rich markup.
HOSTILE = "A\x1b[2J\x1b]0;pwned\x07B\rC\u009b31m\u202eD\u2066\x7f\x00E [bold red]x[/]"
# Anything that acts on a terminal instead of being shown: C0 (but newline), DEL, C1, bidi.
ACTIVE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# A key no pattern recognises: only knowing it finds it.
PLAIN_KEY = "local-secret-0123456789abcdef"
OPENAI_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def inert(text: str) -> bool:
    return ACTIVE.search(text) is None


# --- the functions -----------------------------------------------------------------------


def test_controls_and_bidi_overrides_are_shown_escaped() -> None:
    shown = safetext.for_terminal(HOSTILE)
    assert inert(shown)
    assert shown == (
        "A\\x1b[2J\\x1b]0;pwned\\x07B\\x0dC\\x9b31m\\u202eD\\u2066\\x7f\\x00E [bold red]x[/]"
    )
    assert safetext.for_terminal(shown) == shown  # escaping twice changes nothing


def test_ordinary_text_in_any_script_is_left_alone() -> None:
    # Accents, CJK, Arabic (its own direction is not an override), an emoji joined by ZWJ.
    text = (
        "Ch\u00e2teau \u2014 \u00abM\u00e4rchen\u00bb \u6771\u4eac "
        "\u0645\u0631\u062d\u0628\u0627 \U0001f468\u200d\U0001f469 caf\u00e9"
    )
    assert safetext.for_terminal(text) == text
    assert safetext.one_line(text) == text


def test_for_terminal_keeps_lines_and_one_line_cannot_start_one() -> None:
    assert safetext.for_terminal("a\nb") == "a\nb"
    # A title that tries to print a line of its own ("Done: ...") stays inside its line.
    assert safetext.one_line("x\nDone: 8/8 chapters\r\n\tz") == "x Done: 8/8 chapters z"


def test_key_shapes_are_masked() -> None:
    text = (
        f"Incorrect API key provided: {OPENAI_KEY}. "
        "OpenRouter: sk-or-v1-0123456789abcdef0123456789abcdef. "
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig "
        'echo {"api_key": "k3y-v4lue-9876543210"} url ?api-key=q1w2e3r4t5y6'
    )
    masked = safetext.mask_secrets(text)
    for secret in (
        OPENAI_KEY,
        "sk-or-v1-0123456789abcdef0123456789abcdef",
        "eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "k3y-v4lue-9876543210",
        "q1w2e3r4t5y6",
    ):
        assert secret not in masked
    assert "***6789" in masked  # enough left to tell which key it was
    assert masked.startswith("Incorrect API key provided: ***")
    assert '"api_key": "***' in masked and "Bearer ***" in masked
    # Words are not keys: titles and reasons pass through masking too.
    prose = "The Bearer Messenger met sk-learn-examples and the tasks-2024 list."
    assert safetext.mask_secrets(prose) == prose


def test_known_keys_are_masked_whatever_their_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    message = f"denied for {PLAIN_KEY}"
    assert safetext.mask_secrets(message) == message  # unknown and of no known shape
    assert PLAIN_KEY not in safetext.mask_secrets(message, [PLAIN_KEY])
    monkeypatch.setenv("OPENAI_API_KEY", PLAIN_KEY)
    assert PLAIN_KEY not in safetext.mask_secrets(message)
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setattr(safetext, "_remembered", set())
    safetext.remember_secret(PLAIN_KEY)
    assert PLAIN_KEY not in safetext.for_terminal(message)
    assert PLAIN_KEY not in safetext.one_line(message)
    # A short "key" (a local server's "test") is not hunted through every message.
    safetext.remember_secret("test")
    assert safetext.mask_secrets("a test message") == "a test message"


# --- every view ----------------------------------------------------------------------------


def hostile_events(out: Path) -> list[Event]:
    result = ChapterResult(
        chapter=1, title=HOSTILE, words=10, provider="openai", model="m", scenes=(), elements=()
    )
    progress = BookProgress(
        done=1,
        failed=1,
        total=3,
        working=((2, HOSTILE, f"host{HOSTILE}:12:w1", time.time() - 3),),
        tokens=5,
        done_this_run=1,
        started=time.time() - 60,
        at=time.time(),
        book=HOSTILE,
    )
    reason = f"HTTP 400: {HOSTILE} (key: {OPENAI_KEY})"
    finished = RunFinished(
        out_dir=out,
        completed=1,
        total=3,
        failures={3: reason},
        title=HOSTILE,
        image_failures={f"chapter 1, scene {HOSTILE}": reason},
    )
    return [
        RunStarted(out / "book.epub", HOSTILE, out, "openai", HOSTILE, "flag", 3, 3),
        Notice(f"cannot parse {HOSTILE}.xhtml; skipped"),
        ChapterSkipped(4, HOSTILE, book=HOSTILE),
        ChapterFinished(result, 1.0, book=HOSTILE),
        ImageFinished(1, 1, f"images/{HOSTILE}.png", 1.0, book=HOSTILE),
        ChapterRetry(2, 1, reason, 1.0, book=HOSTILE),
        ChapterFailed(3, reason, book=HOSTILE),
        progress,
        finished,
        LibraryFinished((finished,), {out / f"{HOSTILE}.epub": reason}),
    ]


def test_plain_lines_show_hostile_text_escaped(tmp_path: Path) -> None:
    out = tmp_path / f"imaginize_{HOSTILE}"
    stream = io.StringIO()
    view = PlainProgress(stream)
    for event in hostile_events(out):
        view(event)
    shown = stream.getvalue()
    assert inert(shown), shown
    assert OPENAI_KEY not in shown
    # Every event's text is there, escaped: nothing was dropped to make it safe.
    assert shown.count("A\\x1b[2J") >= 10
    # The carriage return cannot overwrite a line: every line is one the view wrote.
    starts = ("imaginize:", "[", "Done:", "  ", "Library:", "A\\x1b[2J")
    assert all(line.startswith(starts) for line in shown.splitlines()), shown


def render_plain(renderable: object) -> str:
    """What rich writes for `renderable`, without colours (so any ESC is not rich's own)."""
    sink = io.StringIO()
    Console(file=sink, width=200, color_system=None, force_terminal=True).print(renderable)
    return sink.getvalue()


def test_the_live_display_shows_hostile_text_escaped_and_markup_literally(
    tmp_path: Path,
) -> None:
    stream = io.StringIO()  # not a terminal: rich writes no sequences of its own
    live = LiveProgress(stream)
    events = hostile_events(tmp_path / HOSTILE)
    try:
        for event in events:
            live(event)
            if isinstance(event, BookProgress):
                board = render_plain(live._render())
    finally:
        live.close()
    for text in (board, stream.getvalue()):
        assert inert(text), text
        assert OPENAI_KEY not in text
        assert "[bold red]x[/]" in text  # rich markup in a title is shown, not obeyed
    assert "A\\x1b[2J" in board and "12:w1" in board


def test_status_table_and_json(tmp_path: Path) -> None:
    chapters = [(1, HOSTILE), (2, "Plain")]
    manifest = mf.new_manifest(str(tmp_path / "b.epub"), "0" * 64, HOSTILE, chapters, 0.0)
    failed = mf.Entry(
        1, HOSTILE, mf.Status.FAILED, attempts=3, error=f"HTTP 400: {HOSTILE} {OPENAI_KEY}"
    )
    running = mf.Entry(
        2, "Plain", mf.Status.IN_PROGRESS, owner=f"h{HOSTILE}:1:w1", heartbeat_at=time.time()
    )
    manifest = manifest.with_entry(failed).with_entry(running)
    report = StatusReport(manifest, None, time.time())
    table = render_status(report)
    assert inert(table), table
    assert OPENAI_KEY not in table
    rows = table.splitlines()
    assert rows[1].startswith("1  A\\x1b[2J") and rows[2].startswith("2  Plain")
    text = render_status(report, as_json=True)
    assert OPENAI_KEY not in text
    data = json.loads(text)
    # JSON keeps titles exactly (escaped by JSON itself); only the key is masked.
    assert data["book"]["title"] == HOSTILE and data["chapters"][0]["title"] == HOSTILE
    assert data["chapters"][0]["error"].startswith(f"HTTP 400: {HOSTILE} ***")
    assert inert(text)


def test_contents_lists_a_failure_on_one_line_without_the_key() -> None:
    book = BookInfo("T", "A", (ChapterInfo(1, "One"), ChapterInfo(2, "Two")))
    reason = f"HTTP 400: bad\nrequest {HOSTILE} (key: {OPENAI_KEY})"
    contents = render_contents(book, {}, [], {2: reason})
    assert OPENAI_KEY not in contents and inert(contents)
    failed = [line for line in contents.splitlines() if "failed:" in line]
    assert failed == [f"- Chapter 2 failed: {safetext.one_line(reason)}"]


def test_a_failure_is_kept_in_the_manifest_without_a_key(tmp_path: Path) -> None:
    """The manifest's own guard, whatever the error's way in (not only the HTTP one)."""
    store = ManifestStore(tmp_path)
    store.join(book_path="b", sha256="s", title="T", chapters=[(1, "One")])
    claim = store.claim("host:1:w1", lease=600, max_attempts=3)
    assert claim is not None
    events: list[Event] = []
    problem = ProviderError(f"rejected by the safety system: echo {OPENAI_KEY}")
    record_failure(store, claim, 3, problem, events.append)
    kept = "".join((tmp_path / name).read_text(encoding="utf-8") for name in MANIFEST_FILES)
    assert OPENAI_KEY not in kept and "echo ***6789" in kept
    assert events == [ChapterFailed(1, "rejected by the safety system: echo ***6789")]


# --- a server that quotes the key, over real HTTP ------------------------------------------


@pytest.mark.slow
def test_the_servers_text_is_masked_where_it_enters(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(400, "Invalid request", echo_key=True))
    # imaginize's own client: openai >= 3.60 keeps no Authorization header on the request an
    # error carries, so the key is known because the client was built with it.
    client = openai_client.build(PLAIN_KEY, fake_openai.url, 10.0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert PLAIN_KEY in str(caught.value)  # the server did quote it
    problem = status_error(caught.value)
    assert str(problem).startswith("HTTP 400: Invalid request (key: ***")
    assert PLAIN_KEY not in str(problem)


@pytest.mark.slow
def test_a_quoted_key_is_in_no_output_and_no_file(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    book = tmp_path / "book.epub"
    shutil.copy(SAMPLE, book)
    out = tmp_path / "out"
    fake_openai.script(default=error(400, "Invalid request", echo_key=True))
    run = imaginize(
        book, "-o", out, "--base-url", fake_openai.url, "--api-key", PLAIN_KEY, "--chapters", "1-2"
    )
    assert run.returncode == 1, run.stderr
    assert "(key: ***" in run.stderr  # the reason is shown, the key is not
    table = imaginize("status", book, "-o", out)
    as_json = imaginize("status", book, "-o", out, "--json")
    assert json.loads(as_json.stdout)["chapters"][0]["error"].startswith("HTTP 400 from ")
    texts = {
        "run stdout": run.stdout,
        "run stderr": run.stderr,
        "status": table.stdout + table.stderr,
        "status --json": as_json.stdout + as_json.stderr,
    }
    texts |= {p.name: p.read_text(encoding="utf-8") for p in out.rglob("*") if p.is_file()}
    assert MANIFEST_NAME in texts and "Contents.md" in texts
    assert [name for name, text in texts.items() if PLAIN_KEY in text] == []

    # A 401 quoting the key stops the run with one line, the key masked there too.
    fake_openai.script(default=error(401, "Incorrect API key provided", echo_key=True))
    refused = imaginize(
        book, "-o", out, "--base-url", fake_openai.url, "--api-key", PLAIN_KEY, "--force"
    )
    assert refused.returncode == 2, refused.stderr
    assert "Incorrect API key provided (key: ***" in refused.stderr
    assert PLAIN_KEY not in refused.stderr + refused.stdout
    assert all(PLAIN_KEY not in (out / name).read_text(encoding="utf-8") for name in MANIFEST_FILES)


# --- a hostile book, end to end ------------------------------------------------------------


def hostile_book(folder: Path) -> Path:
    """An EPUB whose file name, title and chapter headings carry control sequences: the
    metadata only what XML allows (C1, bidi), the tag-soup chapters raw ESC and BEL."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "<p>" + "The red lantern glowed over the orchard wall at night. " * 30 + "</p>"
    path = build_epub(
        folder / "plain.epub", [("HEADA", text), ("HEADB", text)], title="TITLEX", toc="none"
    )
    edit_member(path, opf_name(path), "TITLEX", "Evil\u009b2J\u202eTitle [bold red]x")
    edit_member(path, "EPUB/chapter-01.xhtml", "HEADA", "Head\x1b]0;pwned\x07A\x1b[2J")
    edit_member(path, "EPUB/chapter-02.xhtml", "HEADB", "Head\u202eB [bold red]x")
    return path.rename(folder / "evil\x1b[31m.epub")


@pytest.mark.slow
def test_a_hostile_book_is_shown_escaped_by_run_and_status(tmp_path: Path) -> None:
    book = hostile_book(tmp_path)
    run = imaginize(book)  # the default output folder, named after the book's file
    assert run.returncode == 0, run.stderr
    assert "Head\\x1b]0;pwned\\x07A" in run.stderr and "\\u202eTitle" in run.stderr
    assert "imaginize_evil\\x1b[31m" in run.stderr
    table = imaginize("status", book)
    assert table.returncode == 0, table.stderr
    assert "Evil\\x9b2J\\u202eTitle [bold red]x: 2 chapters" in table.stdout
    for shown in (run.stdout, run.stderr, table.stdout, imaginize("status", book, "--json").stdout):
        assert inert(shown), shown
    # The guides and the manifest keep the title as the book gives it.
    out = ManifestStore(book.parent / "imaginize_evil\x1b[31m").read()
    assert out is not None and out.chapters[0].title.startswith("Head\x1b]0;pwned\x07A")


@pytest.mark.slow
def test_the_live_display_on_a_real_terminal(tmp_path: Path) -> None:
    """The CLI on a pseudo-terminal (the live display): the book's controls never reach it."""
    book = hostile_book(tmp_path)
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "imaginize", str(book)],
        stdin=child,
        stdout=child,
        stderr=child,
        # No colours: rich's own sequences are then cursor moves and bold, never the book's.
        env=CLEAN_ENV | {"COLUMNS": "200", "TERM": "xterm", "NO_COLOR": "1"},
        cwd=ROOT,
    )
    os.close(child)
    shown = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([main], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the process and its workers closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
    assert process.wait(timeout=10) == 0
    text = shown.decode("utf-8", "replace")
    assert "\\u202eTitle [bold red]x: 2 of 2 chapters" in text and "Done: 2/2" in text
    for raw in ("\x1b]0;pwned", "\x07", "\x1b[2J", "\u202e", "\u009b", "\x1b[31m"):
        assert raw not in text, raw
