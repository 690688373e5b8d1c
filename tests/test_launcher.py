"""The launcher with fake workers: what it does with each typed message a worker sends, and
with each way a worker ends. No processes: a fake process and a real pipe."""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.errors import AuthenticationError, ExitCode, ServerPaused
from imaginize.events import Event, Notice
from imaginize.model import Book, Chapter
from imaginize.settings import RunSettings
from imaginize.workers import launcher as launching
from imaginize.workers.launcher import Launcher
from imaginize.workers.messages import Fatal, Message
from imaginize.workers.spec import WorkerSpec
from imaginize.workers.worker import serve

WORKER_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


@dataclass
class FakeProcess:
    """What the launcher reads of a worker process: its exit code, once it has ended."""

    exitcode: int | None
    pid: int = 999_999
    closed: bool = field(default=False)

    def close(self) -> None:
        self.closed = True


def launcher_with(tmp_path: Path, events: list[Event]) -> Launcher:
    book = Book(tmp_path / "b.epub", "B", "A", "en", (Chapter(1, "One", "Text."),))
    offline = RunSettings(ProviderConfig(ProviderKind.OFFLINE, "heuristic"))
    return Launcher([(WorkerSpec(str(book.path), str(tmp_path), offline), book)], 2, events.append)


def ended(launcher: Launcher, worker_id: str, code: int, *messages: Message) -> None:
    """A worker that sent `messages` and then exited with `code`, as the launcher finds it."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    for message in messages:
        writer.send(message)
    writer.close()
    lifeline, keep_open = multiprocessing.Pipe(duplex=False)
    lifeline.close()
    process = FakeProcess(code)
    launcher._workers[worker_id] = launching._Worker(worker_id, process, reader, keep_open)  # type: ignore[arg-type]
    launcher._reap()


@pytest.mark.parametrize("error", [AuthenticationError, ServerPaused])
def test_a_worker_error_that_ends_the_run_is_known_by_its_type(
    tmp_path: Path, error: type[AuthenticationError] | type[ServerPaused]
) -> None:
    """A refused key or a long server pause stops every worker and is the run's error, with
    its message whole, whatever the message says (no "API key" needed in it)."""
    events: list[Event] = []
    launcher = launcher_with(tmp_path, events)
    said = "the server said no: error: 401"
    ended(launcher, "w1", error.exit_code, Fatal.of(error(said)))
    assert isinstance(launcher._fatal, error) and str(launcher._fatal) == said
    assert launcher._interrupts == 1  # the others are asked to give their chapters back
    assert not events


def test_any_other_worker_error_is_a_notice_and_the_worker_is_replaced(tmp_path: Path) -> None:
    events: list[Event] = []
    launcher = launcher_with(tmp_path, events)
    started: list[str] = []
    launcher._start = lambda: started.append("another")  # type: ignore[method-assign]
    launcher._work_left = lambda: True  # type: ignore[method-assign]
    ended(launcher, "w1", ExitCode.CHAPTERS_FAILED, Fatal.of(RuntimeError("a bug")))
    assert events == [
        Notice(
            "worker w1 stopped (exit status 1) imaginize: worker w1: internal error: "
            "RuntimeError('a bug')"
        )
    ]
    assert launcher._fatal is None and started == ["another"]


def test_notices_pass_on_once_per_run(tmp_path: Path) -> None:
    """N workers learning one fact about a server say it once; a taken-over claim is its own."""
    events: list[Event] = []
    launcher = launcher_with(tmp_path, events)
    context = Notice("the server's context is 8,192 tokens")
    ended(launcher, "w1", ExitCode.OK, context, Notice("chapter 3: taken over (lease expired)"))
    ended(launcher, "w2", ExitCode.OK, context)
    assert events == [context, Notice("chapter 3: taken over (lease expired)")]


def test_a_stand_alone_worker_says_its_messages_as_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a launcher (`python -m imaginize.workers.worker`), the same messages are
    stderr lines: its last word names the worker."""
    settings = launcher_with(tmp_path, []).jobs[0][0].settings
    spec = WorkerSpec(str(tmp_path / "absent.epub"), str(tmp_path), settings)
    handlers = {signum: signal.getsignal(signum) for signum in WORKER_SIGNALS}
    try:
        assert serve([(spec, None)], "w7") == ExitCode.BAD_INPUT
    finally:  # serve installs a worker's handlers: this process gets its own back
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    err = capsys.readouterr().err
    assert err.startswith("imaginize: worker w7: error: ") and "absent.epub" in err
