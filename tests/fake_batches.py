"""The Batch API of the test server (tests/fake_openai.py): `/v1/files` and `/v1/batches`.

What OpenAI's Batch API does, on 127.0.0.1, through the official client's calls:
    POST /v1/files                 multipart upload (purpose "batch"): a FileObject
    GET  /v1/files/{id}            the FileObject
    GET  /v1/files/{id}/content    the file's bytes (input, output or error JSONL)
    POST /v1/batches               {input_file_id, endpoint, completion_window, metadata}
    GET  /v1/batches/{id}          the Batch, its status advanced by the time since creation
    GET  /v1/batches               list (newest first), for a client recovering a lost id
    POST /v1/batches/{id}/cancel   cancelling, then cancelled

A batch passes validating -> in_progress -> finalizing -> completed, spending
`batch_timing` seconds (three numbers) in the first three. Its replies are made when it
reaches `completed`, one per input line, from the same reply source the chat endpoint uses
(queue, responder, default: `FakeOpenAI.chat_step`), so a batch run and a live run with the
same responder get the same replies. A reply step with "status" >= 400 goes to the error file
(a partial failure). Options (script keys, or attributes of the server):
    batch_api        False: every path here answers 404, as llama.cpp and Ollama do
    batch_timing     [validating, in_progress, finalizing] seconds (default [0.05, 0.1, 0.05])
    batch_token_cap  enqueued tokens allowed at once (prompt ceil(chars / 4) + max_tokens of
                     every request of every batch not yet ended): a batch that would pass it
                     fails at validation with code "token_limit_exceeded", as OpenAI's does
    batch_expire     how many of the next batches expire: half their requests are answered,
                     the rest are in the error file with code "batch_expired"
    batch_delays     {"upload" | "create" | "content": seconds}: the next such request is
                     logged and done, then answered that much later (once each), so a test
                     can kill a client while it waits for the answer
    batch_errors     {"upload" | "create": status}: the next such request is refused with
                     that status (once each), before anything is stored
Each request is logged like the others (endpoint "files" or "batches"); a batch create's
record also holds "custom_ids": the custom_id of every line of its input file.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fake_openai import FakeOpenAI, _Handler

TERMINAL = ("completed", "failed", "expired", "cancelled")
STATES = ("validating", "in_progress", "finalizing", "completed")


def handles(path: str) -> bool:
    route = path.split("?", 1)[0].removeprefix("/v1")
    return route == "/files" or route.startswith(("/files/", "/batches"))


class FakeBatches:
    """Files and batches of one FakeOpenAI; every method runs on a request's thread."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.enabled = True
        self.timing: tuple[float, float, float] = (0.05, 0.1, 0.05)
        self.token_cap: int | None = None
        self.expire = 0
        self.delays: dict[str, float] = {}
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}

    # -- serving

    def serve(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        route = handler.path.split("?", 1)[0].removeprefix("/v1").strip("/").split("/")
        record: dict[str, Any] = {
            "t_mono": time.monotonic(),
            "t_wall": time.time(),
            "method": handler.command,
            "path": handler.path,
            "endpoint": route[0],
            "headers": {k.lower(): v for k, v in handler.headers.items()},
            "body": None,
            "kind": "batch",
            "source": "batches",
        }
        status, payload, content_type = self._route(handler, route, raw, record)
        record["status"] = status
        self.fake._record(record)
        phase = None
        if route[-1] == "content":
            phase = "content"
        elif handler.command == "POST" and len(route) == 1:
            phase = {"files": "upload", "batches": "create"}.get(route[0])
        with self._lock:
            delay = self.delays.pop(phase, 0.0) if phase else 0.0
        if delay and self.fake._stop.wait(delay):
            handler.close_connection = True
            return
        handler.send(status, payload, content_type)

    def _route(
        self, handler: _Handler, route: list[str], raw: bytes, record: dict[str, Any]
    ) -> tuple[int, bytes, str]:
        if not self.enabled:
            return _error(404, f"Unknown path {handler.path}", "unknown_url")
        auth = handler.headers.get("Authorization")
        if self.fake.api_key is not None and auth != f"Bearer {self.fake.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        method, head = handler.command, route[0]
        if method == "POST" and len(route) == 1:
            phase = {"files": "upload", "batches": "create"}.get(head, "")
            with self._lock:
                refused = self.errors.pop(phase, None)
            if refused is not None:
                return _error(refused, f"{phase} refused for the test", None)
        if head == "files" and len(route) == 1 and method == "POST":
            return self._upload(handler, raw, record)
        if head == "files" and len(route) >= 2 and method == "GET":
            with self._lock:
                found = self.files.get(route[1])
            if found is None:
                return _error(404, f"No such File object: {route[1]}", None)
            if route[2:] == ["content"]:
                return 200, found["data"], "application/octet-stream"
            return 200, json.dumps(found["object"]).encode(), "application/json"
        if head == "batches" and len(route) == 1 and method == "POST":
            body = json.loads(raw or b"{}")
            record["body"] = body
            return self._create(body, record)
        if head == "batches" and len(route) == 1 and method == "GET":
            with self._lock:
                ids = list(self.batches)
            data = [self._view(i) for i in reversed(ids)]
            return (
                200,
                json.dumps({"object": "list", "data": data, "has_more": False}).encode(),
                ("application/json"),
            )
        if head == "batches" and len(route) >= 2:
            with self._lock:
                known = route[1] in self.batches
            if not known:
                return _error(404, f"No such Batch object: {route[1]}", None)
            if route[2:] == ["cancel"] and method == "POST":
                with self._lock:
                    batch = self.batches[route[1]]
                    if batch["status"] not in TERMINAL:
                        batch["status"] = "cancelled"
                        batch["cancelled_at"] = int(time.time())
                return 200, json.dumps(self._view(route[1])).encode(), "application/json"
            if len(route) == 2 and method == "GET":
                return 200, json.dumps(self._view(route[1])).encode(), "application/json"
        return _error(404, f"Unknown path {handler.path}", "unknown_url")

    def _upload(
        self, handler: _Handler, raw: bytes, record: dict[str, Any]
    ) -> tuple[int, bytes, str]:
        head = f"Content-Type: {handler.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        fields: dict[str, Any] = {}
        filename = "upload.jsonl"
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = part.get_payload(decode=True)
            filename = part.get_filename() or filename
        data = fields.get("file") or b""
        purpose = (fields.get("purpose") or b"").decode()
        record["body"] = {"purpose": purpose, "filename": filename, "bytes": len(data)}
        return (
            200,
            json.dumps(self._add_file(data, purpose, filename)).encode(),
            ("application/json"),
        )

    def _add_file(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        with self._lock:
            return self.files[self._file(data, purpose, filename)]["object"]

    def _file(self, data: bytes, purpose: str, filename: str) -> str:
        """Store a file (under the lock); its id."""
        file_id = f"file-fake{len(self.files) + 1}"
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[file_id] = {"object": obj, "data": data}
        return file_id

    def _create(self, body: dict[str, Any], record: dict[str, Any]) -> tuple[int, bytes, str]:
        file_id = body.get("input_file_id")
        with self._lock:
            found = self.files.get(str(file_id))
        if found is None:
            return _error(400, f"No such File object: {file_id}", None)
        lines = [json.loads(line) for line in found["data"].splitlines() if line.strip()]
        record["custom_ids"] = [line.get("custom_id") for line in lines]
        tokens = sum(_enqueued(line.get("body") or {}) for line in lines)
        with self._lock:
            batch_id = f"batch_fake{len(self.batches) + 1}"
            enqueued = sum(
                b["tokens"] for b in self.batches.values() if b["status"] not in TERMINAL
            )
            expire = self.expire > 0
            self.expire -= 1 if expire else 0
            batch: dict[str, Any] = {
                "id": batch_id,
                "lines": lines,
                "tokens": tokens,
                "created": time.monotonic(),
                "created_at": int(time.time()),
                "status": "validating",
                "expire": expire,
                "metadata": body.get("metadata"),
                "input_file_id": file_id,
                "endpoint": body.get("endpoint"),
                "output_file_id": None,
                "error_file_id": None,
                "errors": None,
                "counts": {"total": len(lines), "completed": 0, "failed": 0},
            }
            if self.token_cap is not None and enqueued + tokens > self.token_cap:
                batch["status"] = "failed"
                batch["errors"] = {
                    "object": "list",
                    "data": [
                        {
                            "code": "token_limit_exceeded",
                            "message": (
                                f"Enqueued token limit reached for the model: {self.token_cap} "
                                f"(already enqueued {enqueued}, this batch {tokens})"
                            ),
                            "param": None,
                            "line": None,
                        }
                    ],
                }
            self.batches[batch_id] = batch
        return 200, json.dumps(self._view(batch_id)).encode(), "application/json"

    # -- time passing

    def _view(self, batch_id: str) -> dict[str, Any]:
        """The batch as OpenAI shows it, advanced to the state its age gives."""
        with self._lock:
            batch = self.batches[batch_id]
            if batch["status"] not in TERMINAL:
                age = time.monotonic() - batch["created"]
                passed, state = 0.0, STATES[-1]
                for name, seconds in zip(STATES, self.timing, strict=False):
                    passed += seconds
                    if age < passed:
                        state = name
                        break
                if state == "completed" and batch["expire"]:
                    state = "expired"
                batch["status"] = state
                ended = state in TERMINAL
            else:
                ended = False
            if ended:
                self._answer(batch)
            return {
                "id": batch["id"],
                "object": "batch",
                "endpoint": batch["endpoint"],
                "errors": batch["errors"],
                "input_file_id": batch["input_file_id"],
                "completion_window": "24h",
                "status": batch["status"],
                "output_file_id": batch["output_file_id"],
                "error_file_id": batch["error_file_id"],
                "created_at": batch["created_at"],
                "metadata": batch["metadata"],
                "request_counts": dict(batch["counts"]),
            }

    def _answer(self, batch: dict[str, Any]) -> None:
        """Make the output and error files of a batch that just ended (under the lock, so
        no reader sees it ended without them)."""
        outputs: list[str] = []
        errors: list[str] = []
        lines = batch["lines"]
        answered = len(lines) // 2 if batch["status"] == "expired" else len(lines)
        for index, line in enumerate(lines):
            body = line.get("body") or {}
            request_id = f"req_fakebatch_{batch['id']}_{index}"
            if index >= answered:
                error = {
                    "code": "batch_expired",
                    "message": "This request could not be executed "
                    "before the completion window expired.",
                }
                errors.append(
                    json.dumps(
                        {
                            "id": request_id,
                            "custom_id": line.get("custom_id"),
                            "response": None,
                            "error": error,
                        }
                    )
                )
                continue
            status, answer = self.fake.batch_reply(body, index)
            out = {
                "id": request_id,
                "custom_id": line.get("custom_id"),
                "response": {"status_code": status, "request_id": request_id, "body": answer},
                "error": None,
            }
            (outputs if status == 200 else errors).append(json.dumps(out))
        if outputs:
            batch["output_file_id"] = self._file(_jsonl(outputs), "batch_output", "output.jsonl")
        if errors:
            batch["error_file_id"] = self._file(_jsonl(errors), "batch_output", "errors.jsonl")
        batch["counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}


def _jsonl(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _enqueued(body: dict[str, Any]) -> int:
    from tests.fake_openai import _tokens, prompt_text

    cap = body.get("max_tokens") or body.get("max_completion_tokens") or 0
    return _tokens(prompt_text(body)) + (cap if isinstance(cap, int) else 0)


def _error(status: int, message: str, code: str | None) -> tuple[int, bytes, str]:
    kind = "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return status, json.dumps(body).encode(), "application/json"
