"""The command line as users meet it: real subprocesses, the click runner, real HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from imaginize.cli.main import cli, main
from tests.epubs import build_epub, write_zip
from tests.fake_openai import FakeOpenAI, error, reply
from tests.replies import answer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "the-lanternfruit-orchard.epub"
# Keep the tests' environment from choosing a provider for them.
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "OPENROUTER_API_KEY")
}


def imaginize(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a real process, to the end."""
    return subprocess.run(
        [sys.executable, "-m", "imaginize", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=CLEAN_ENV,
        cwd=ROOT,
    )


def start_imaginize(*args: str | Path) -> subprocess.Popen[str]:
    """Start the CLI in a real process and return at once (for signals and races)."""
    return subprocess.Popen(
        [sys.executable, "-m", "imaginize", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLEAN_ENV,
        cwd=ROOT,
    )


def one_error_line(result: subprocess.CompletedProcess[str], path: Path) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"imaginize: error: {path}: ")
    return lines[0]


@pytest.mark.slow
def test_bad_inputs_get_one_line_and_status_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.epub"
    empty.write_bytes(b"")
    jpeg = tmp_path / "photo.epub"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200)
    text = tmp_path / "notes.epub"
    text.write_text("just some text, not a zip")
    good = build_epub(tmp_path / "good.epub")
    truncated = tmp_path / "truncated.epub"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    no_container = write_zip(tmp_path / "nocontainer.epub", {"mimetype": "application/epub+zip"})
    folder = tmp_path / "folder.epub"
    folder.mkdir()
    cases = [tmp_path / "missing.epub", folder, empty, jpeg, text, truncated, no_container]
    # One interpreter for all the cases keeps this fast; each still goes through main().
    script = (
        "import sys; from imaginize.cli.main import main\n"
        "for p in sys.argv[1:]:\n"
        "    code = main([p, '-o', p + '.out'])\n"
        "    print(code, file=sys.stderr, flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, cases)],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        timeout=60,
    )
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 * len(cases), result.stderr
    for path, (message, code) in zip(cases, zip(lines[::2], lines[1::2], strict=True), strict=True):
        assert code == "2", message
        assert message.startswith(f"imaginize: error: {path}: "), message


@pytest.mark.slow
def test_missing_book_as_a_real_process(tmp_path: Path) -> None:
    missing = tmp_path / "nope.epub"
    line = one_error_line(imaginize(missing), missing)
    assert "no such file" in line.lower() or "not found" in line.lower()


def test_bad_chapter_spec_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(SAMPLE), "-o", str(tmp_path), "--chapters", "9-x"])
    assert result.exit_code != 0
    assert main([str(SAMPLE), "-o", str(tmp_path), "--chapters", "9-x"]) == 2


def test_unknown_option_is_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SAMPLE), "--no-such-option"]) == 2
    assert "no-such-option" in capsys.readouterr().err


def test_status_without_a_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(SAMPLE), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imaginize: error: ") and "no manifest" in err


@pytest.fixture
def book(tmp_path: Path) -> Path:
    copy = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, copy)
    return copy


def chat_requests(server: FakeOpenAI) -> list[dict]:
    return [r for r in server.requests if r["endpoint"] == "chat"]


@pytest.mark.slow
def test_openai_run_resume_force_and_selection(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(responder=answer)
    out = book.parent / "out"
    first = imaginize(book, "-o", out, "--base-url", fake_openai.url, "--model", "fake-model")
    assert first.returncode == 0, first.stderr
    assert len(chat_requests(fake_openai)) == 8
    results = sorted((out / "chapters").glob("*.json"))
    assert [p.name for p in results] == [f"{n:03d}.json" for n in range(1, 9)]
    data = json.loads(results[0].read_text())
    assert data["provider"] == "openai" and data["model"] == "fake-model"
    assert data["usage"]["totalTokens"] > 0
    contents = (out / "Contents.md").read_text()
    assert "The Lanternfruit Orchard" in contents and "fake-model" in contents
    guides = {name: (out / name).read_text() for name in ("Chapters.md", "Elements.md")}

    again = imaginize(book, "-o", out, "--base-url", fake_openai.url, "--model", "fake-model")
    assert again.returncode == 0
    assert len(chat_requests(fake_openai)) == 8  # nothing redone
    assert {n: (out / n).read_text() for n in guides} == guides  # same guides

    forced = imaginize(
        book, "-o", out, "--base-url", fake_openai.url, "--force", "--chapters", "2-3,7"
    )
    assert forced.returncode == 0, forced.stderr
    redone = chat_requests(fake_openai)[8:]
    assert len(redone) == 3
    prompts = [r["body"]["messages"][-1]["content"] for r in redone]
    assert sorted(p.split(" of ")[0] for p in prompts) == ["Chapter 2", "Chapter 3", "Chapter 7"]


@pytest.mark.slow
def test_a_refused_key_stops_the_whole_run(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(api_key="right-key", responder=answer)
    result = imaginize(
        book,
        "-o",
        book.parent / "out",
        "--base-url",
        fake_openai.url,
        "--api-key",
        "wrong",
        "--concurrent",
        "2",
    )
    assert result.returncode == 2
    assert "API key" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(chat_requests(fake_openai)) <= 2  # one per worker, not the whole book


@pytest.mark.slow
def test_failed_chapters_are_listed_and_exit_1(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(default=reply("no JSON here, sorry"))
    out = book.parent / "out"
    result = imaginize(book, "-o", out, "--base-url", fake_openai.url, "--chapters", "1")
    assert result.returncode == 1, result.stderr
    assert "chapter 1 failed" in result.stderr
    assert "Chapter 1 failed" in (out / "Contents.md").read_text()
    status = json.loads(imaginize("status", book, "-o", out, "--json").stdout)
    assert status["chapters"][0]["status"] == "failed"
    assert status["totals"]["failed"] == 1


@pytest.mark.slow
def test_retryable_errors_are_retried_within_the_cap(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(error(500), error(500))
    out = book.parent / "out"
    result = imaginize(book, "-o", out, "--base-url", fake_openai.url, "--chapters", "1")
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in chat_requests(fake_openai)] == [500, 500, 200]


@pytest.mark.slow
def test_loading_the_cli_imports_no_server_client() -> None:
    """`openai` takes about a second to import: a run loads it only in the workers that call
    a server (their forkserver preloads it), a --batch-api run when it starts the batch flow;
    the CLI itself, for an offline run, `status` or `--help`, never does."""
    probe = (
        "import sys, imaginize.cli.main; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'openai', 'httpx', 'rq'}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"
