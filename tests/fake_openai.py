"""A small, real OpenAI-compatible HTTP server for tests.

Tests exercise imaginize's network code over real HTTP on 127.0.0.1 (never the internet, never an
API key), so retries, timeouts and broken bodies go through the same client stack as production.

In-process use (see the ``fake_openai`` fixture in tests/conftest.py)::

    with FakeOpenAI() as server:                  # binds 127.0.0.1 on a free port
        server.enqueue(rate_limited(2), reply("hi"))
        client = openai.OpenAI(base_url=server.url, api_key="test", max_retries=0)
        ...
        server.requests                           # list of request records, see below

As its own process (several imaginize processes against one server)::

    python -m tests.fake_openai --port 0 --script script.json --log requests.jsonl

prints its URL ("http://127.0.0.1:PORT/v1") as the first stdout line and serves until SIGTERM/SIGINT
(or stdin EOF with --exit-on-stdin-eof). ``FakeOpenAIProcess`` wraps this for tests.

Endpoints (the "/v1" prefix is optional): POST /v1/chat/completions ("chat"), POST
/v1/images/generations ("images"), GET /v1/models ("models"); the Batch API's /v1/files and
/v1/batches (tests/fake_batches.py, script keys batch_*). Anything else answers 404.

Steps: what the server answers to one request. A step is a JSON object (a dict in Python; a bare
string is shorthand for ``{"content": <string>}``). Keys common to every kind:
    "kind"     "reply" | "image" | "models" | "error" | "malformed" | "truncated" | "hang".
               Optional: a step with "status" >= 400 is an error, otherwise the endpoint's normal
               answer (reply for chat, image for images, models for models).
    "delay"    seconds to sleep before answering (latency); cut short by server shutdown.
    "headers"  extra response headers, {name: value}.
    "times"    in a queue only: the step is enqueued this many times.
Per kind:
    reply      "content": assistant text (a non-string is sent JSON-encoded); "finish_reason"
               (default "stop", e.g. "length"); "usage": partial {prompt_tokens, completion_tokens,
               total_tokens} over deterministic defaults (ceil(chars / 4) of the prompt's message
               texts and of the content; total = sum); "model" (default: the request's).
    image      "format": "png" (default) | "jpeg"; "width"/"height" (default: the request's
               "size" WxH, else 64x64); "color": [r, g, b].
               Answers {"created", "data": [{"b64_json"}] * n}.
    models     "ids": model ids to list (default: the server's model_ids).
    error      "status" (required); "message", "type", "code", "param" for the OpenAI error body
               {"error": {...}} (defaults per status), "extra_error" more fields of that
               object (llama-server's "n_ctx"); "retry_after" (Retry-After header, seconds or
               an HTTP date) and "retry_after_ms" (retry-after-ms header); "body" replaces the JSON
               body verbatim (e.g. a proxy's HTML 502) with "content_type" (default text/html);
               "echo_key": true appends the API key the request carried (its Authorization
               header without "Bearer ") to the message, as careless servers and proxies do.
    malformed  HTTP "status" (default 200) with "body" (default: cut-off JSON) that the client
               cannot parse; "content_type" default application/json.
    truncated  200 whose Content-Length promises the whole reply but only half is sent before the
               connection closes ("body" optional, default a normal reply).
    hang       sends nothing for "seconds" (default 600, i.e. longer than any client timeout);
               shutdown ends it at once.

Choosing the step for a request, first match wins:
    1. routing/auth/body problems: unknown path 404, wrong method 405, api_key set and the
       Authorization header is not "Bearer <api_key>" 401, body not JSON 400;
    2. rpm set and the sliding window of accepted POSTs is full: 429 with Retry-After;
    2b. tpm set and a chat reply's reported usage (its total_tokens) would take the tokens
       accepted in the sliding window past tpm * rate_window / 60: 429 with Retry-After
       (checked once the reply is chosen, steps 5-7; the reply's step is then not used);
    3. reject_response_format set and the chat request's response_format type is in
       rejected_formats (default json_schema, json_object): an error with that status, as some
       servers (llama.cpp) do;
       A format is named by its type, or "json_object+schema" for llama-cpp-python's
       {"type": "json_object", "schema": ...} (refused by either name);
    3b. context_tokens set and the chat request's prompt (ceil(chars / 4)) plus its max_tokens
       exceed it: a 400 worded as context_style says ("openai", "llama.cpp",
       "llama-cpp-python");
    4. reject_stream set and a chat request with "stream": true: 400 (a server that does
       not stream); otherwise a reply or loop step is streamed as server-sent events;
    5. the endpoint's queue (FIFO);
    6. chat only: the responder, a callable given the parsed request JSON that returns a step, a
       string, or None to fall through (in a script: "package.module:function");
    7. the endpoint's default step.
2-4 consume no queued step.

Script file (JSON object; every key optional; the same keys go to FakeOpenAI.script()):
    {"chat": [step, ...], "images": [step, ...], "models": [step, ...],   # queues
     "default": step, "image_default": step,     # chat / images answer when the queue is empty
     "responder": "tests.helpers:answer",        # importable callable, see 6. above
     "rpm": 30, "rate_window": 60.0,             # sliding-window rate limit (window in seconds)
     "tpm": 40000,                                # tokens a minute, over the same window
     "ratelimit_headers": true,                  # x-ratelimit-limit/remaining/reset-* on replies
     "reject_response_format": 400, "rejected_formats": ["json_schema", "json_object"],
     "api_key": "test", "model_ids": ["fake-model"],
     "context_tokens": 4096, "context_style": "openai",
     "slots": 1,                                 # replies generated at once; the rest queue
     "interrupt_requests": true}                 # llama-cpp-python's default, see below
"interrupt_requests": as llama-cpp-python's server (its interrupt_requests, on by default):
    replies are generated one at a time (slots 1 unless set) and a streamed reply in progress
    ends at once with "data: [DONE]" and no finish_reason when another chat reply waits for its
    turn; its record then says "interrupted": true.
Example: {"chat": [{"status": 429, "retry_after": 1}, {"delay": 0.2, "content": "{\\"a\\": 1}"}],
          "default": {"content": "ok", "finish_reason": "length"}}

Request log: one record per request, appended when the answer is chosen (before any delay):
    {"seq", "t_mono" (time.monotonic() at receipt: system-wide, comparable across processes on
     one machine), "t_wall" (time.time()), "method", "path", "endpoint", "headers" (lower-case
     names, includes authorization), "body" (parsed JSON or None), "status" (answered; None for
     a hang), "kind", "source" ("queue", "responder", "default", "rate_limit",
     "response_format", "stream", "route", "auth", "body"), optional "error" (responder traceback)}
``server.requests`` holds them in process; with a log path each is also appended as one JSON line
(flushed) so other processes can read it with ``read_log()``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import importlib
import json
import math
import os
import select
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests import fake_batches
from tests.fake_batches import FakeBatches

__all__ = [
    "FakeOpenAI",
    "FakeOpenAIProcess",
    "error",
    "hang",
    "image",
    "make_jpeg",
    "make_png",
    "malformed",
    "prompt_text",
    "rate_limited",
    "read_log",
    "reply",
    "truncated",
]

Step = dict[str, Any]
StepLike = Step | str
Responder = Callable[[dict[str, Any]], StepLike | None]

REPO_ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS: dict[str, tuple[str, str]] = {  # path -> (endpoint name, method)
    "/chat/completions": ("chat", "POST"),
    "/images/generations": ("images", "POST"),
    "/models": ("models", "GET"),
}
NORMAL_KIND = {"chat": "reply", "images": "image", "models": "models"}
KINDS = {"reply", "image", "models", "error", "malformed", "truncated", "hang", "loop"}
SCRIPT_KEYS = {
    "chat",
    "images",
    "models",
    "default",
    "image_default",
    "responder",
    "rpm",
    "rate_window",
    "tpm",
    "ratelimit_headers",
    "reject_response_format",
    "rejected_formats",
    "api_key",
    "model_ids",
    "context_tokens",
    "context_style",
    "reject_stream",
    "slots",
    "interrupt_requests",
    # the Batch API: tests/fake_batches.py
    "batch_api",
    "batch_timing",
    "batch_token_cap",
    "batch_expire",
    "batch_delays",
    "batch_errors",
}
# (message, type, code): close to what api.openai.com sends, so error mapping is realistic.
ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


# --- step constructors: plain dicts, so the same steps serialise into script files ----------


def reply(
    content: Any = "ok",
    *,
    finish_reason: str = "stop",
    usage: Mapping[str, int] | None = None,
    delay: float = 0.0,
    **extra: Any,
) -> Step:
    step: Step = {"kind": "reply", "content": content, "finish_reason": finish_reason}
    if usage is not None:
        step["usage"] = dict(usage)
    if delay:
        step["delay"] = delay
    return step | extra


def error(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    code: str | None = None,
    retry_after: float | str | None = None,
    retry_after_ms: int | None = None,
    **extra: Any,
) -> Step:
    step: Step = {"kind": "error", "status": status}
    for key, value in (
        ("message", message),
        ("type", error_type),
        ("code", code),
        ("retry_after", retry_after),
        ("retry_after_ms", retry_after_ms),
    ):
        if value is not None:
            step[key] = value
    return step | extra


def rate_limited(
    retry_after: float | str | None = 1, retry_after_ms: int | None = None, **extra: Any
) -> Step:
    return error(429, retry_after=retry_after, retry_after_ms=retry_after_ms, **extra)


def malformed(body: str = '{"id": "chatcmpl-broken", "choices": [', **extra: Any) -> Step:
    return {"kind": "malformed", "body": body} | extra


def truncated(**extra: Any) -> Step:
    return {"kind": "truncated"} | extra


def hang(seconds: float = 600.0) -> Step:
    return {"kind": "hang", "seconds": seconds}


def image(
    fmt: str = "png",
    *,
    width: int | None = None,
    height: int | None = None,
    color: Iterable[int] = (200, 120, 40),
    **extra: Any,
) -> Step:
    step: Step = {"kind": "image", "format": fmt, "color": list(color)}
    if width is not None:
        step["width"] = width
    if height is not None:
        step["height"] = height
    return step | extra


# --- helpers --------------------------------------------------------------------------------


def prompt_text(body: Mapping[str, Any] | None) -> str:
    """All message texts of a chat request, for responders and deterministic usage counts."""
    parts: list[str] = []
    for message in (body or {}).get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                p["text"]
                for p in content
                if isinstance(p, Mapping) and isinstance(p.get("text"), str)
            )
    return "\n\n".join(parts)


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records from a request log file; skips a last line still being written."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _load_callable(spec: str) -> Responder:
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"responder must be 'package.module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def make_png(width: int, height: int, color: Iterable[int] = (200, 120, 40)) -> bytes:
    """A valid solid-colour RGB PNG (no image library needed)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\x00" + bytes(color) * width  # filter byte 0, then RGB pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def make_jpeg(width: int, height: int, color: Iterable[int] = (200, 120, 40)) -> bytes:
    """A valid solid-colour baseline JPEG: flat 8x8 blocks need only DC coefficients."""
    r, g, b = color
    ycc = (
        0.299 * r + 0.587 * g + 0.114 * b,
        128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
        128 + 0.5 * r - 0.418688 * g - 0.081312 * b,
    )
    # With an all-ones quantisation table the DC of a flat block is 8 * (value - 128).
    dcs = [round(8 * (min(max(v, 0), 255) - 128)) for v in ycc]

    def segment(marker: int, data: bytes) -> bytes:
        return struct.pack(">HH", marker, len(data) + 2) + data

    jfif = b"JFIF\x00\x01\x01\x00" + struct.pack(">HH", 1, 1) + b"\x00\x00"
    dqt = b"\x00" + b"\x01" * 64
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"".join(
        bytes((i, 0x11, 0)) for i in (1, 2, 3)
    )
    # DC table: categories 0-11 all get 4-bit codes equal to the category; AC table: only EOB,
    # code "0". Every component uses both tables.
    dht = bytes([0x00, 0, 0, 0, 12] + [0] * 12 + list(range(12)))
    dht += bytes([0x10, 1] + [0] * 15 + [0x00])
    sos = bytes((3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0))

    bits: list[int] = []
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    for n in range(blocks):
        for dc in dcs:
            diff = dc if n == 0 else 0  # DC is coded as the difference from the previous block
            size = abs(diff).bit_length()
            bits += [(size >> i) & 1 for i in (3, 2, 1, 0)]
            value = diff if diff >= 0 else diff + (1 << size) - 1
            bits += [(value >> i) & 1 for i in range(size - 1, -1, -1)]
            bits.append(0)  # EOB: all AC coefficients are zero
    bits += [1] * (-len(bits) % 8)
    scan = bytearray()
    for i in range(0, len(bits), 8):
        byte = int("".join(map(str, bits[i : i + 8])), 2)
        scan += b"\xff\x00" if byte == 0xFF else bytes((byte,))  # byte stuffing
    return (
        b"\xff\xd8"
        + segment(0xFFE0, jfif)
        + segment(0xFFDB, dqt)
        + segment(0xFFC0, sof)
        + segment(0xFFC4, dht)
        + segment(0xFFDA, sos)
        + bytes(scan)
        + b"\xff\xd9"
    )


def _normalize(step: StepLike, endpoint: str) -> Step:
    if isinstance(step, str):
        step = {"content": step}
    if not isinstance(step, Mapping):
        raise TypeError(f"a step must be a dict or a string, got {type(step).__name__}")
    out = dict(step)
    out.pop("times", None)
    if "kind" not in out:
        out["kind"] = "error" if int(out.get("status", 200)) >= 400 else NORMAL_KIND[endpoint]
    if out["kind"] not in KINDS:
        raise ValueError(f"unknown step kind {out['kind']!r}; expected one of {sorted(KINDS)}")
    if out["kind"] == "error" and "status" not in out:
        raise ValueError("an error step needs a 'status'")
    return out


# --- the server -----------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    # Non-daemon so server_close() joins every handler (it skips daemon threads); stop() makes
    # sure each one ends promptly, and the socket timeout below is the backstop.
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128  # many concurrent clients in pacing tests
    fake: FakeOpenAI

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked before the handler thread starts, so stop() can always unblock its reads.
        with self.fake._conns_lock:
            self.fake._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.fake._conns_lock:
            self.fake._conns.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers; the client pools connections
    timeout = 30  # idle keep-alive connections end eventually
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers: 40 ms on every reply.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record; stderr noise would drown test output

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            self.server.fake._serve(self)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client gave up (e.g. its timeout) mid-answer

    def send(
        self,
        status: int,
        payload: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, Any] | None = None,
        *,
        content_length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header(
            "Content-Length", str(len(payload) if content_length is None else content_length)
        )
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 running in a background thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        default: StepLike | None = None,
        image_default: StepLike | None = None,
        responder: Responder | str | None = None,
        rpm: int | None = None,
        rate_window: float = 60.0,
        tpm: int | None = None,
        ratelimit_headers: bool = False,
        reject_response_format: int | None = None,
        rejected_formats: Iterable[str] = ("json_schema", "json_object"),
        api_key: str | None = None,
        model_ids: Iterable[str] = ("fake-model",),
        context_tokens: int | None = None,
        context_style: str = "openai",
        reject_stream: bool = False,
        slots: int | None = None,
        interrupt_requests: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.log_path = Path(log_path) if log_path is not None else None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # wait_for_requests
        self._conns_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._stop = threading.Event()  # ends delays and hangs at shutdown
        self._queues: dict[str, collections.deque[Step]] = {
            e: collections.deque() for e in NORMAL_KIND
        }
        self._defaults: dict[str, Step] = {
            "chat": _normalize(reply(), "chat"),
            "images": _normalize(image(), "images"),
            "models": _normalize({}, "models"),
        }
        self._records: list[dict[str, Any]] = []
        self._accepted: collections.deque[float] = collections.deque()  # rate-limit window
        self._tokens: collections.deque[tuple[float, int]] = collections.deque()  # tpm window
        self._log_file: Any = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.responder: Responder | None = None
        self.rpm = rpm
        self.rate_window = rate_window
        self.tpm = tpm
        # Every chat reply states the limits and what is left of them, as OpenAI's do.
        self.ratelimit_headers = ratelimit_headers
        self.reject_response_format = reject_response_format
        self.rejected_formats = tuple(rejected_formats)
        self.api_key = api_key
        self.model_ids = list(model_ids)
        self.context_tokens = context_tokens
        self.context_style = context_style
        self.reject_stream = reject_stream
        self._slots: threading.Semaphore | None = None
        self.slots = slots
        # Chat replies waiting for a slot: with interrupt_requests, they end a stream.
        self._waiting = 0
        self.interrupt_requests = interrupt_requests
        if interrupt_requests and not slots:
            self.slots = 1  # llama-cpp-python generates one reply at a time
        self.batches = FakeBatches(self)  # /v1/files and /v1/batches (tests/fake_batches.py)
        self.script(default=default, image_default=image_default, responder=responder)

    # -- lifecycle

    def start(self) -> Self:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("a", encoding="utf-8")
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stop.set()
        self._httpd.shutdown()  # no new connections after this returns
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:  # wake handlers blocked reading idle keep-alive connections
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()  # joins handler threads
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base_url to give an OpenAI client."""
        return f"{self.base_url}/v1"

    # -- scripting

    def enqueue(self, *steps: StepLike, endpoint: str = "chat") -> None:
        """Append steps to an endpoint's queue ("chat", "images" or "models")."""
        normalized: list[Step] = []
        for step in steps:
            times = step.get("times", 1) if isinstance(step, Mapping) else 1
            normalized += [_normalize(step, endpoint)] * int(times)
        with self._lock:
            self._queues[endpoint].extend(normalized)

    def script(self, spec: Mapping[str, Any] | None = None, /, **options: Any) -> None:
        """Clear every queue, then apply the script keys given (see the module docstring).

        Keys not given keep their values. Takes a script-file dict and/or keyword arguments.
        """
        merged = {**(spec or {}), **options}
        unknown = set(merged) - SCRIPT_KEYS
        if unknown:
            raise ValueError(f"unknown script keys: {sorted(unknown)}")
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
        for endpoint in NORMAL_KIND:
            self.enqueue(*merged.get(endpoint) or (), endpoint=endpoint)
        for key, endpoint in (("default", "chat"), ("image_default", "images")):
            if merged.get(key) is not None:
                self._defaults[endpoint] = _normalize(merged[key], endpoint)
        if "responder" in merged:
            responder = merged["responder"]
            self.responder = _load_callable(responder) if isinstance(responder, str) else responder
        for key in (
            "rpm",
            "rate_window",
            "tpm",
            "ratelimit_headers",
            "reject_response_format",
            "api_key",
            "context_tokens",
            "context_style",
            "reject_stream",
            "slots",
        ):
            if key in merged:
                setattr(self, key, merged[key])
        if "interrupt_requests" in merged:
            self.interrupt_requests = bool(merged["interrupt_requests"])
            if self.interrupt_requests and not self.slots:
                self.slots = 1  # llama-cpp-python generates one reply at a time
        if "rejected_formats" in merged:
            self.rejected_formats = tuple(merged["rejected_formats"])
        for key, attr in (
            ("batch_api", "enabled"),
            ("batch_timing", "timing"),
            ("batch_token_cap", "token_cap"),
            ("batch_expire", "expire"),
            ("batch_delays", "delays"),
            ("batch_errors", "errors"),
        ):
            if key in merged:
                setattr(self.batches, attr, merged[key])
        if "model_ids" in merged:
            self.model_ids = list(merged["model_ids"])

    def pending(self, endpoint: str = "chat") -> int:
        """Steps still queued for an endpoint."""
        with self._lock:
            return len(self._queues[endpoint])

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of the request records so far."""
        with self._lock:
            return list(self._records)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least `count` requests were received; raises TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._records) >= count, timeout):
                raise TimeoutError(f"{len(self._records)} of {count} requests after {timeout}s")
            return list(self._records)

    # -- serving

    def _choose(
        self, handler: _Handler, route: tuple[str, str] | None, body: Any, body_ok: bool
    ) -> tuple[Step, str, str | None]:
        """The step for one request, where it came from, and a responder traceback if any."""
        if route is None:
            return error(404, f"Unknown path {handler.path}", code="unknown_url"), "route", None
        endpoint, method = route
        if handler.command != method:
            return error(405, f"{handler.command} is not allowed on {handler.path}"), "route", None
        auth = handler.headers.get("Authorization")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return error(401), "auth", None
        if not body_ok:
            return error(400, "We could not parse the JSON body of your request."), "body", None
        if handler.command == "POST" and self.rpm:
            limited = self._rate_limit()
            if limited is not None:
                return limited, "rate_limit", None
        if endpoint == "chat" and self.reject_response_format:
            wanted = body.get("response_format") or {}
            kind = wanted.get("type")
            # llama-cpp-python's form, a schema inside json_object, can be refused on its own.
            label = f"{kind}+schema" if kind == "json_object" and "schema" in wanted else kind
            if kind in self.rejected_formats or label in self.rejected_formats:
                message = f"response_format type {label!r} is not supported by this server"
                return error(self.reject_response_format, message), "response_format", None
        if endpoint == "chat" and self.context_tokens:
            too_long = self._context_error(body)
            if too_long is not None:
                return too_long, "context", None
        if endpoint == "chat" and body.get("stream") and self.reject_stream:
            return error(400, "This server does not stream."), "stream", None
        with self._lock:
            if self._queues[endpoint]:
                return self._queues[endpoint].popleft(), "queue", None
        if endpoint == "chat" and self.responder is not None:
            try:
                answer = self.responder(body)
                if answer is not None:
                    return _normalize(answer, endpoint), "responder", None
            except Exception as exc:  # surface test bugs as a 500 plus a logged traceback
                return error(500, f"responder failed: {exc!r}"), "responder", traceback.format_exc()
        return self._defaults[endpoint], "default", None

    @property
    def slots(self) -> int | None:
        """Replies generated at once (llama.cpp with one slot: 1); the rest wait their turn,
        and a reply's "delay" is spent in its slot. None: no limit."""
        return self._slot_count

    @slots.setter
    def slots(self, count: int | None) -> None:
        self._slot_count = count
        self._slots = threading.Semaphore(count) if count else None

    def _context_error(self, body: Mapping[str, Any]) -> Step | None:
        """A 400 for a request whose prompt and reply cap exceed the context, worded as the
        server named by context_style says it: "openai" (also vLLM), "llama.cpp"
        (llama-server: n_ctx in the error object), "llama-cpp-python"."""
        assert self.context_tokens is not None
        prompt = _tokens(prompt_text(body))
        cap = body.get("max_tokens") or body.get("max_completion_tokens") or 0
        wanted = prompt + (cap if isinstance(cap, int) else 0)
        if wanted <= self.context_tokens:
            return None
        n_ctx = self.context_tokens
        if self.context_style == "llama.cpp":
            return error(
                400,
                "the request exceeds the available context size, try increasing it",
                error_type="exceed_context_size_error",
                extra_error={"n_prompt_tokens": prompt, "n_ctx": n_ctx},
            )
        if self.context_style == "llama-cpp-python":
            return error(400, f"Requested tokens ({wanted}) exceed context window of {n_ctx}")
        return error(
            400,
            f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{wanted} tokens ({prompt} in the messages, {cap} in the completion). Please "
            "reduce the length of the messages or completion.",
            code="context_length_exceeded",
        )

    def _rate_limit(self) -> Step | None:
        now = time.monotonic()
        with self._lock:
            while self._accepted and self._accepted[0] <= now - self.rate_window:
                self._accepted.popleft()
            if len(self._accepted) >= self.rpm:
                wait = self._accepted[0] + self.rate_window - now
                return rate_limited(
                    max(1, math.ceil(wait)),
                    max(1, math.ceil(wait * 1000)),
                    message=f"Rate limit reached: {self.rpm} requests per {self.rate_window}s.",
                    headers={"x-ratelimit-limit-requests": self.rpm},
                )
            self._accepted.append(now)  # rejected requests do not count, as with OpenAI
        return None

    def _token_limit(self, step: Step, body: Any) -> Step | None:
        """2b: a 429 when this reply's tokens would overrun the tpm window, else None (the
        tokens are then counted)."""
        assert self.tpm is not None
        usage = {
            "prompt_tokens": _tokens(prompt_text(body)),
            "completion_tokens": _tokens(str(step.get("content", "ok"))),
            **(step.get("usage") or {}),
        }
        used = usage.get("total_tokens") or usage["prompt_tokens"] + usage["completion_tokens"]
        allowed = self.tpm * self.rate_window / 60.0
        now = time.monotonic()
        with self._lock:
            while self._tokens and self._tokens[0][0] <= now - self.rate_window:
                self._tokens.popleft()
            if sum(n for _, n in self._tokens) + used > allowed:
                wait = self._tokens[0][0] + self.rate_window - now if self._tokens else 1.0
                return rate_limited(
                    max(1, math.ceil(wait)),
                    message=f"Rate limit reached: {self.tpm} tokens per minute.",
                    headers={"x-ratelimit-limit-tokens": self.tpm},
                )
            self._tokens.append((now, int(used)))
        return None

    def _stated_limits(self) -> dict[str, str]:
        """x-ratelimit-* headers for the limits set (rpm, tpm) and what is left of them in
        the window now, per minute as OpenAI states them."""
        now = time.monotonic()
        stated: dict[str, str] = {}
        with self._lock:
            for name, limit, entries in (
                ("requests", self.rpm, [(t, 1) for t in self._accepted]),
                ("tokens", self.tpm, list(self._tokens)),
            ):
                if not limit:
                    continue
                live = [(t, n) for t, n in entries if t > now - self.rate_window]
                per_minute = limit if name == "tokens" else limit * 60.0 / self.rate_window
                left = max(0, round(per_minute * self.rate_window / 60.0) - sum(n for _, n in live))
                reset = live[0][0] + self.rate_window - now if live else 0.0
                stated[f"x-ratelimit-limit-{name}"] = f"{per_minute:g}"
                stated[f"x-ratelimit-remaining-{name}"] = str(left)
                stated[f"x-ratelimit-reset-{name}"] = f"{max(0.0, reset):.3f}s"
        return stated

    def _record(self, record: dict[str, Any]) -> None:
        with self._cond:
            record["seq"] = len(self._records)
            self._records.append(record)
            if self._log_file is not None:
                self._log_file.write(json.dumps(record) + "\n")
                self._log_file.flush()  # other processes read the file while we run
            self._cond.notify_all()

    def batch_reply(self, body: dict[str, Any], index: int) -> tuple[int, dict[str, Any]]:
        """A batch line's answer (status, body) from the chat endpoint's reply source: its
        queue, then the responder, then the default. Error steps give their error body;
        steps that make sense only on a live connection (malformed, hang...) a 500."""
        with self._lock:
            step = self._queues["chat"].popleft() if self._queues["chat"] else None
        if step is None and self.responder is not None:
            answer = self.responder(body)
            step = None if answer is None else _normalize(answer, "chat")
        step = step or self._defaults["chat"]
        if step["kind"] == "reply":
            record = {"seq": f"batch{index}", "t_wall": time.time()}
            return 200, json.loads(self._completion(step, body, record))
        status = int(step.get("status", 500)) if step["kind"] == "error" else 500
        message, error_type, code = ERROR_DEFAULTS.get(status, (f"HTTP {status}", "", None))
        detail = {"message": step.get("message", message), "type": error_type, "code": code}
        return status, {"error": detail}

    def _serve(self, handler: _Handler) -> None:
        if fake_batches.handles(handler.path):
            self.batches.serve(handler)
            return
        t_mono, t_wall = time.monotonic(), time.time()
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body: Any = None
        body_ok = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_ok = False
        if handler.command == "POST" and not isinstance(body, dict):
            body_ok = False
        route = ENDPOINTS.get(handler.path.split("?", 1)[0].removeprefix("/v1"))
        endpoint = route[0] if route else None
        step, source, tb = self._choose(handler, route, body, body_ok)
        if endpoint == "chat" and step["kind"] in ("reply", "loop") and self.tpm:
            limited = self._token_limit(step, body)
            step, source = (limited, "token_limit") if limited else (step, source)
        kind = step["kind"]
        status = {"hang": None, "truncated": 200}.get(kind, step.get("status", 200))
        record = {
            "t_mono": t_mono,
            "t_wall": t_wall,
            "method": handler.command,
            "path": handler.path,
            "endpoint": endpoint,
            "headers": {k.lower(): v for k, v in handler.headers.items()},
            "body": body if body_ok else raw.decode("utf-8", "replace"),
            "status": status,
            "kind": kind,
            "source": source,
        }
        if tb is not None:
            record["error"] = tb
        self._record(record)

        headers = {"x-request-id": f"req_fake_{record['seq']}", **step.get("headers", {})}
        if self.ratelimit_headers and endpoint == "chat" and kind in ("reply", "loop"):
            headers = {**self._stated_limits(), **headers}
        # A reply's delay is its generation time: on a server with slots, spent in one.
        slot = self._slots if kind in ("reply", "loop") else None
        if slot is not None:
            with self._lock:
                self._waiting += 1
            try:
                while not slot.acquire(timeout=0.05):
                    if self._stop.is_set():
                        handler.close_connection = True
                        return
            finally:
                with self._lock:
                    self._waiting -= 1
        try:
            if step.get("delay") and self._stop.wait(float(step["delay"])):
                handler.close_connection = True  # shutting down: drop the request unanswered
                return
            self._answer(handler, kind, step, body, record, headers)
        finally:
            if slot is not None:
                slot.release()

    def _answer(
        self,
        handler: _Handler,
        kind: str,
        step: Step,
        body: Any,
        record: dict[str, Any],
        headers: dict[str, Any],
    ) -> None:
        streamed = isinstance(body, dict) and bool(body.get("stream"))
        if kind in ("reply", "loop") and (streamed or kind == "loop"):
            self._generate(handler, step, body, record, headers, streamed)
        elif kind == "hang":
            self._stop.wait(float(step.get("seconds", 600.0)))
            handler.close_connection = True
        elif kind == "error":
            self._send_error(handler, step, headers)
        elif kind == "malformed":
            payload = str(step.get("body", malformed()["body"])).encode()
            content_type = step.get("content_type", "application/json")
            handler.send(int(step.get("status", 200)), payload, content_type, headers)
        elif kind == "truncated":
            full = step.get("body")
            payload = (
                full.encode() if isinstance(full, str) else self._completion(step, body, record)
            )
            handler.send(
                200, payload[: len(payload) // 2], headers=headers, content_length=len(payload)
            )
            handler.close_connection = True  # closing is what makes the body short
        else:
            builder = {"reply": self._completion, "image": self._images, "models": self._models}
            handler.send(200, builder[kind](step, body, record), headers=headers)

    def _generate(
        self,
        handler: _Handler,
        step: Step,
        body: dict[str, Any],
        record: dict[str, Any],
        headers: dict[str, Any],
        streamed: bool,
    ) -> None:
        """A reply produced token by token, as a real server does: streamed as server-sent
        events, or sent whole at the end. A "loop" step repeats its "content" until the
        request's max_tokens (finish "length"), or for ever without one, as a small model
        caught in a repetition does. "token_delay": seconds per token. Generation stops
        when the client goes away; the record then says "disconnected": true. Record keys
        "generated" (tokens) and "ended" (time.monotonic()) are set when it stops."""
        delay = float(step.get("token_delay", 0.0))
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        if step["kind"] == "loop":
            unit = str(step.get("content") or "the orchard glowed and ")
            pieces: Iterable[str] = _repeat(unit, cap if isinstance(cap, int) else None)
            finish = "length"
        else:
            content = step.get("content", "ok")
            content = content if isinstance(content, str) else json.dumps(content)
            pieces = [content[i : i + 16] for i in range(0, len(content), 16)] or [""]
            finish = step.get("finish_reason", "stop")
        record["generated"], record["disconnected"] = 0, False
        out: list[str] = []
        chunk_id = f"chatcmpl-fake{record['seq']}"
        model = body.get("model") or self.model_ids[0]
        try:
            if streamed:
                handler.send_response(200)
                handler.send_header("Content-Type", "text/event-stream")
                handler.send_header("Connection", "close")
                for name, value in headers.items():
                    handler.send_header(name, str(value))
                handler.end_headers()
                handler.close_connection = True
            for piece in pieces:
                if (delay and self._stop.wait(delay)) or self._stop.is_set():
                    handler.close_connection = True
                    return
                if streamed and self.interrupt_requests and self._waiting:
                    # llama-cpp-python: another request waits, so this stream just ends.
                    record["interrupted"] = True
                    handler.wfile.write(b"data: [DONE]\n\n")
                    handler.wfile.flush()
                    return
                if streamed:
                    _event(handler, _chunk(chunk_id, model, {"content": piece}, None))
                elif _gone(handler):
                    raise ConnectionResetError("client went away")
                out.append(piece)
                record["generated"] += 1
            usage = {
                "prompt_tokens": _tokens(prompt_text(body)),
                "completion_tokens": record["generated"],
            }
            usage.update(step.get("usage") or {})
            if streamed:
                _event(handler, _chunk(chunk_id, model, {}, finish))
                if (body.get("stream_options") or {}).get("include_usage"):
                    _event(
                        handler,
                        {**_chunk(chunk_id, model, {}, None), "choices": [], "usage": usage},
                    )
                handler.wfile.write(b"data: [DONE]\n\n")
                handler.wfile.flush()
            else:
                whole = {**step, "content": "".join(out), "finish_reason": finish, "usage": usage}
                handler.send(200, self._completion(whole, body, record), headers=headers)
        except (ConnectionError, OSError):
            record["disconnected"] = True
            handler.close_connection = True
        finally:
            record["ended"] = time.monotonic()

    def _send_error(self, handler: _Handler, step: Step, headers: dict[str, Any]) -> None:
        status = int(step["status"])
        if "retry_after" in step:
            headers["retry-after"] = step["retry_after"]
        if "retry_after_ms" in step:
            headers["retry-after-ms"] = step["retry_after_ms"]
        if "body" in step:
            content_type = step.get("content_type", "text/html")
            handler.send(status, str(step["body"]).encode(), content_type, headers)
            return
        message, error_type, code = ERROR_DEFAULTS.get(
            status,
            (f"HTTP {status}", "server_error" if status >= 500 else "invalid_request_error", None),
        )
        message = step.get("message", message)
        if step.get("echo_key"):
            sent = handler.headers.get("Authorization", "").removeprefix("Bearer ")
            message = f"{message} (key: {sent})"
        payload = {
            "error": {
                "message": message,
                "type": step.get("type", error_type),
                "param": step.get("param"),
                "code": step.get("code", code),
                **step.get("extra_error", {}),
            }
        }
        handler.send(status, json.dumps(payload).encode(), headers=headers)

    def _completion(self, step: Step, body: Any, record: Mapping[str, Any]) -> bytes:
        content = step.get("content", "ok")
        if content is not None and not isinstance(content, str):
            content = json.dumps(content)
        usage = {
            "prompt_tokens": _tokens(prompt_text(body)),
            "completion_tokens": _tokens(content or ""),
        }
        usage.update(step.get("usage") or {})
        with contextlib.suppress(TypeError):  # a test's deliberately broken counts
            usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        body = body if isinstance(body, dict) else {}
        completion = {
            "id": f"chatcmpl-fake{record['seq']}",
            "object": "chat.completion",
            "created": int(record["t_wall"]),
            "model": step.get("model") or body.get("model") or self.model_ids[0],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": step.get("finish_reason", "stop"),
                }
            ],
            "usage": usage,
            "system_fingerprint": None,
        }
        return json.dumps(completion).encode()

    def _images(self, step: Step, body: Any, record: Mapping[str, Any]) -> bytes:
        width, height = 64, 64
        size = str((body or {}).get("size") or "")
        with contextlib.suppress(ValueError):
            width, height = (int(x) for x in size.split("x"))
        width, height = int(step.get("width", width)), int(step.get("height", height))
        color = step.get("color", (200, 120, 40))
        encode = make_jpeg if step.get("format", "png") in ("jpeg", "jpg") else make_png
        b64 = base64.b64encode(encode(width, height, color)).decode()
        count = int((body or {}).get("n") or 1)
        return json.dumps(
            {"created": int(record["t_wall"]), "data": [{"b64_json": b64}] * count}
        ).encode()

    def _models(self, step: Step, body: Any, record: Mapping[str, Any]) -> bytes:
        ids = step.get("ids", self.model_ids)
        data = [{"id": i, "object": "model", "created": 0, "owned_by": "fake-openai"} for i in ids]
        return json.dumps({"object": "list", "data": data}).encode()


# --- subprocess mode ------------------------------------------------------------------------


def _repeat(unit: str, cap: int | None) -> Iterable[str]:
    count = 0
    while cap is None or count < cap:
        yield unit
        count += 1


def _chunk(chunk_id: str, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _event(handler: _Handler, data: Mapping[str, Any]) -> None:
    handler.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
    handler.wfile.flush()


def _gone(handler: _Handler) -> bool:
    """Whether the client closed its end (a read would return end of file at once)."""
    sock = handler.connection
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class FakeOpenAIProcess:
    """Runs the server as its own OS process (several imaginize processes share one server).

    The script is written to `workdir`, the log is `workdir/requests.jsonl` unless given, and
    the child exits on stop() or when this process dies (stdin EOF).
    """

    def __init__(
        self,
        script: Mapping[str, Any] | None = None,
        *,
        workdir: str | os.PathLike[str],
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.script = dict(script or {})
        self.log_path = Path(log_path) if log_path is not None else self.workdir / "requests.jsonl"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        script_path = self.workdir / "fake_openai_script.json"
        script_path.write_text(json.dumps(self.script), encoding="utf-8")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fake_openai",
                "--port",
                "0",
                "--script",
                str(script_path),
                "--log",
                str(self.log_path),
                "--exit-on-stdin-eof",
                *self.extra_args,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"fake_openai process did not start (exit {self.proc.returncode})")
        return self

    def requests(self) -> list[dict[str, Any]]:
        return read_log(self.log_path)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible test server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help="JSON script file (module docstring)")
    parser.add_argument("--log", type=Path, help="append request records here as JSON lines")
    parser.add_argument("--rpm", type=int)
    parser.add_argument("--rate-window", type=float)
    parser.add_argument("--reject-response-format", type=int, metavar="STATUS")
    parser.add_argument("--responder", metavar="MODULE:FUNCTION")
    parser.add_argument("--api-key")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="stop when the parent closes stdin"
    )
    args = parser.parse_args(argv)

    spec = json.loads(args.script.read_text(encoding="utf-8")) if args.script else {}
    for key in ("rpm", "rate_window", "reject_response_format", "responder", "api_key"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    server = FakeOpenAI(host=args.host, port=args.port, log_path=args.log)
    server.script(spec)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.exit_on_stdin_eof:

        def watch_stdin() -> None:
            # Until EOF: the parent closed the pipe or died. os.read, not sys.stdin: a daemon
            # thread blocked inside the buffered reader holds its lock, and the interpreter
            # then aborts at exit ("could not acquire lock for <stdin> at interpreter shutdown").
            while os.read(sys.stdin.fileno(), 65536):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    with server:
        print(server.url, flush=True)
        while not stop.wait(0.2):  # a timed wait keeps signal handlers responsive
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
