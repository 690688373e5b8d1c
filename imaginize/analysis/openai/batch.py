"""Batch API requests and replies: the JSONL lines imaginize uploads and the ones it reads back.

A chapter in batch mode is analysed by the live analyzer itself (`ReplayAnalyzer`), replaying
the replies already received: every request it would send is looked up by the digest of its
body (`request_key`); a reply on file is used exactly as a live reply would be (validation,
quote checks, repair requests, halving a cut-off chunk), and a request without one is noted
and left for the next batch. So the requests are built with the same prompts, chunking and
caps as live mode, and a chapter whose replies are all in gets the result live mode would
have made from the same replies. A chapter may take a few rounds: a repair request can only be
written once the reply it repairs is in.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaginize.analysis.openai.chat import OpenAIAnalyzer, usage_from
from imaginize.analysis.openai.errors import request_tokens
from imaginize.coordination.atomic import write_atomic
from imaginize.errors import ProviderError
from imaginize.model import Analysis, Chapter, Usage
from imaginize.settings import DEFAULT_BATCH_TOKEN_CAP as DEFAULT_TOKEN_CAP

ENDPOINT = "/v1/chat/completions"
# OpenAI's limits for one batch file.
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
REPLIES_NAME = ".imaginize.batch-replies.jsonl"


def canonical(params: dict[str, Any]) -> str:
    """A request body as one JSON text: what its key digests and its batch line carries."""
    return json.dumps(params, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_key(params: dict[str, Any], body: str | None = None) -> str:
    """The digest a request's reply is filed under: same body, same reply. `body`: its
    `canonical` text, when already made."""
    text = canonical(params) if body is None else body
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def custom_id(book_sha256: str, chapter: int, chunk: int, attempt: int) -> str:
    """A request's `custom_id`: the book, the chapter, the request's place in the chapter's
    order (`chunk`) and the chapter's attempt; unique across every batch of the book."""
    return f"{book_sha256[:16]}-c{chapter}-k{chunk}-a{attempt}"


@dataclass(frozen=True)
class Reply:
    """A request's answer: its text, finish reason and usage; or `error` when it failed."""

    content: str = ""
    finish: str = ""
    usage: Usage = field(default_factory=Usage)
    error: str | None = None


@dataclass(frozen=True)
class Wanted:
    """A request to send: its body, that body's `canonical` text and its key."""

    params: dict[str, Any]
    body: str
    key: str


class _Missing(Exception):
    """A request whose reply is not in yet."""

    def __init__(self, wanted: Wanted) -> None:
        super().__init__("no reply yet")
        self.wanted = wanted


class ReplayAnalyzer(OpenAIAnalyzer):
    """The live analyzer over the replies on file. `analyze` of a chunk needing a request
    with no reply gives an empty part and notes the request in `missing`; the caller throws
    that chapter's result away and sends the requests. With `live` set a missing request is
    sent at once instead (--batch-api-then-live)."""

    replies: dict[str, Reply]
    missing: list[Wanted]
    errors: list[str]
    live: bool

    @classmethod
    def over(cls, analyzer: OpenAIAnalyzer, replies: dict[str, Reply]) -> ReplayAnalyzer:
        """`analyzer` (built by `make_analyzer`, so with live mode's settings, whatever they
        are) turned into a replaying one."""
        analyzer.__class__ = cls
        assert isinstance(analyzer, ReplayAnalyzer)
        analyzer.replies = replies
        analyzer.missing = []
        analyzer.errors = []
        analyzer.live = False
        return analyzer

    def start_chapter(self) -> None:
        self.missing, self.errors = [], []

    def _analyze(self, chunk: Chapter, scenes: int, splits: int) -> Analysis:
        try:
            return super()._analyze(chunk, scenes, splits)
        except _Missing as missing:
            self.missing.append(missing.wanted)
            return Analysis((), (), Usage())

    def _request(self, params: dict[str, Any]) -> tuple[str, str, Usage]:
        body = canonical(params)  # made once: the key now, the batch line if it is sent
        key = request_key(params, body)
        reply = self.replies.get(key)
        if reply is None or reply.error is not None:
            if reply is not None:
                self.errors.append(reply.error or "")
            if self.live:
                return super()._request(params)
            raise _Missing(Wanted(params, body, key))
        self.spent += reply.usage
        return reply.content, reply.finish, reply.usage


def request_line(custom: str, body: str) -> bytes:
    """A batch file's line for the request whose `canonical` text is `body` (embedded as
    it is: the body is encoded once, not again for its line)."""
    head = json.dumps({"custom_id": custom, "method": "POST", "url": ENDPOINT})
    return f'{head[:-1]}, "body": {body}}}\n'.encode()


def enqueued_tokens(params: dict[str, Any]) -> int:
    """What a request counts against the enqueued-token cap: its prompt and output cap."""
    return request_tokens(params)


@dataclass(frozen=True)
class Limits:
    requests: int = MAX_REQUESTS
    bytes: int = MAX_BYTES
    tokens: int = DEFAULT_TOKEN_CAP


def split_files(
    lines: list[tuple[bytes, int]], limits: Limits, room: int | None = None
) -> list[list[int]]:
    """Indexes of `lines` (each its bytes and enqueued tokens) grouped into as few files as
    the limits allow, in order. `room`: tokens the first files may take in all (the cap
    less what open batches hold); lines past it are left out, for a later round."""
    files: list[list[int]] = []
    current: list[int] = []
    size = tokens = 0
    budget = limits.tokens if room is None else room
    for index, (data, cost) in enumerate(lines):
        if cost > limits.tokens:
            raise ProviderError(
                f"one request needs {cost:,} enqueued tokens, more than --batch-token-cap "
                f"{limits.tokens:,}"
            )
        if cost > budget:
            break
        full = len(current) >= limits.requests or size + len(data) > limits.bytes
        if current and (full or tokens + cost > limits.tokens):
            files.append(current)
            current, size, tokens = [], 0, 0
        current.append(index)
        size, tokens, budget = size + len(data), tokens + cost, budget - cost
    if current:
        files.append(current)
    return files


def parse_results(text: str) -> Iterator[tuple[str, Reply]]:
    """(custom_id, reply) for each line of an output or error file. A line with a status
    other than 200, or an error, gives a Reply with `error` set."""
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            custom = str(line["custom_id"])
        except (ValueError, KeyError, TypeError):
            continue
        response = line.get("response") or {}
        error = line.get("error")
        body = response.get("body") if isinstance(response, dict) else None
        status = response.get("status_code") if isinstance(response, dict) else None
        if error or status != 200 or not isinstance(body, dict):
            yield custom, Reply(error=_error_text(error, body, status))
            continue
        try:
            choice = body["choices"][0]
            content = choice["message"]["content"] or ""
            finish = str(choice.get("finish_reason") or "")
        except (KeyError, IndexError, TypeError):
            yield custom, Reply(error="malformed response: no choices")
            continue
        if not isinstance(content, str):
            yield custom, Reply(error="malformed response: content is not text")
            continue
        usage, _problem = usage_from(body.get("usage"))
        yield custom, Reply(content, finish, usage)


def _error_text(error: Any, body: Any, status: Any) -> str:
    detail = error if isinstance(error, dict) else None
    if detail is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
        detail = body["error"]
    message = str((detail or {}).get("message") or "no reply")
    code = (detail or {}).get("code")
    where = f"HTTP {status}: " if isinstance(status, int) else ""
    return f"{where}{message}" + (f" ({code})" if code else "")


class ReplyFile:
    """The replies received for one book, by request key: `.imaginize.batch-replies.jsonl` in
    its output folder, one JSON line each, tagged with its chapter. Appended to (and
    fsynced) before the manifest records a batch as ingested, so a process killed in between
    loses nothing; a key written twice (two processes ingesting one batch) keeps its first
    reply. Writers hold an flock on the file, so a rewrite (`keep_only`) never drops a line
    another process appends meanwhile."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / REPLIES_NAME
        # What `load` read: the file (device, inode), the bytes up to its last whole line,
        # and their replies. The file is only appended to or replaced whole, so the next
        # load reads just what was appended (a round re-reading every reply is quadratic).
        self._file: tuple[int, int] | None = None
        self._offset = 0
        self._replies: dict[str, Reply] = {}

    def load(self) -> dict[str, Reply]:
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if (stat.st_dev, stat.st_ino) != self._file or stat.st_size < self._offset:
                    self._file, self._offset, self._replies = (stat.st_dev, stat.st_ino), 0, {}
                handle.seek(self._offset)
                tail = handle.read()
        except FileNotFoundError:
            self._file, self._offset, self._replies = None, 0, {}
            return {}
        whole = tail.rfind(b"\n") + 1  # a torn last line: read again when it is ended
        replies = self._replies
        for _, key, reply in self._lines(tail[:whole].decode("utf-8")):
            if key not in replies or replies[key].error is not None:
                replies[key] = reply
        self._offset += whole
        return dict(replies)

    def append(self, replies: Iterable[tuple[str, int, Reply]]) -> None:
        """Add (key, chapter, reply) lines."""
        lines = [_reply_line(key, chapter, r) for key, chapter, r in replies]
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked() as fd:
            _cut_torn_line(fd)
            os.write(fd, "".join(lines).encode("utf-8"))
            os.fsync(fd)

    def keep_only(self, chapters: set[int]) -> int:
        """Drop the replies of every other chapter (a chapter done again must be asked
        again, not given its old replies); how many lines were dropped."""
        if not self.path.exists():
            return 0
        with self._locked() as fd:
            text = os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")
            kept = [raw for raw, (chapter, _, _) in self._raw_lines(text) if chapter in chapters]
            dropped = len(text.splitlines()) - len(kept)
            if dropped:
                write_atomic(self.path, "".join(kept))
            return dropped

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The file open for appending under an exclusive flock, the one now at its path
        (another writer may have replaced it while this one waited)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    yield fd
                    return
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)  # closing it releases the flock

    @classmethod
    def _lines(cls, text: str) -> Iterator[tuple[int, str, Reply]]:
        for _, parsed in cls._raw_lines(text):
            yield parsed

    @staticmethod
    def _raw_lines(text: str) -> Iterator[tuple[str, tuple[int, str, Reply]]]:
        for raw in text.splitlines(keepends=True):
            if not raw.endswith("\n"):
                break  # a torn last line of a writer that was killed
            try:
                data = json.loads(raw)
                usage = Usage(int(data["usage"][0]), int(data["usage"][1]))
                reply = Reply(data["content"], data["finish"], usage, data.get("error"))
                parsed = (int(data.get("chapter", 0)), str(data["key"]), reply)
            except (ValueError, KeyError, TypeError, IndexError):
                continue
            yield raw, parsed


def _reply_line(key: str, chapter: int, reply: Reply) -> str:
    usage = [reply.usage.prompt_tokens, reply.usage.completion_tokens]
    data = {
        "key": key,
        "chapter": chapter,
        "content": reply.content,
        "finish": reply.finish,
        "usage": usage,
        "error": reply.error,
    }
    return json.dumps(data, ensure_ascii=False) + "\n"


def _cut_torn_line(fd: int) -> None:
    """A writer killed mid-append left a line without its newline: end it, so the next
    line is not glued to it (the reader skips the damaged one)."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")
