"""What the `openai` client's exceptions mean for imaginize: one translation for every call.

Retry only what can succeed on retry: network errors, timeouts, 408, 409, 429 and 5xx. A 401
stops the run; other 4xx fail the unit at once with the server's reason. A 429 also pauses
every process sharing the key (through the pacer), for the server's Retry-After or a backoff.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

import openai

from imaginize import cancel
from imaginize.errors import AuthenticationError, ProviderError, ServerUnreachable
from imaginize.pacing.backoff import backoff_delay, retry_after_seconds
from imaginize.pacing.pace import Reservation, SharedPace
from imaginize.reading.chunking import estimate_tokens
from imaginize.safetext import mask_secrets

_RETRYABLE_STATUS = {408, 409, 429}
T = TypeVar("T")
# The reservation of an unpaced call: nothing to give back.
_UNPACED = Reservation(0, lambda tokens: None)


class StatusError(ProviderError):
    """An HTTP error answer, with its status and the server's error code (if any)."""

    def __init__(self, message: str, status: int, code: str = "", **kwargs: Any) -> None:
        self.status = status
        self.code = code
        super().__init__(message, **kwargs)


class StreamCutShort(ProviderError):
    """A streamed reply ended without a finish_reason: llama-cpp-python's server does this to
    a reply whenever another request arrives (its interrupt_requests, on by default). Not
    the chapter's fault: the caller holds everyone on the key to one request at a time and
    asks again without spending an attempt (see `chat.OpenAIAnalyzer._request`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


def status_error(exc: openai.APIStatusError, server: str = "") -> StatusError:
    """The answer as our error; `server` (host:port) is named in it when given."""
    status = exc.status_code
    retryable = status in _RETRYABLE_STATUS or status >= 500
    wait = retry_after_seconds(exc.response.headers) if retryable else None
    reason = detail(exc) + _context_size(exc)
    where = f" from {server}" if server else ""
    return StatusError(
        f"HTTP {status}{where}: {reason}",
        status,
        _code(exc),
        retryable=retryable,
        retry_after=wait,
    )


def _context_size(exc: openai.APIStatusError) -> str:
    """llama-server names its context size beside the message, not in it."""
    body = exc.body
    error = body.get("error", body) if isinstance(body, dict) else None
    n_ctx = error.get("n_ctx") if isinstance(error, dict) else None
    if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx > 0:
        return f" (n_ctx {n_ctx})"
    return ""


def detail(exc: openai.APIStatusError) -> str:
    """The server's reason, with the key it was sent (and anything shaped like a key) masked:
    some servers and proxies quote it back, and this text is printed and stored."""
    body = exc.body
    text = exc.message
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            text = str(error["message"])
    return mask_secrets(text, [_sent_key(exc)])


def _sent_key(exc: openai.APIError) -> str:
    """The API key the failed request carried (its `Authorization: Bearer` header)."""
    try:
        sent = exc.request.headers.get("authorization") or ""
    except (AttributeError, RuntimeError):  # an error built without a request (tests)
        return ""
    return sent.removeprefix("Bearer ").strip()


def _code(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("code") or error.get("type") or "")
    return ""


@contextmanager
def translated(pacer: SharedPace | None, tokens: int = 0) -> Iterator[Reservation]:
    """Run one API call in a pacer slot (holding `tokens` of a --tpm budget; the caller
    settles the reservation it is given with the usage reported) and turn the client's
    exceptions into ours. Work that was given up on (see `cancel`) sends nothing more, and
    its request under way is cut off (connection shut, slot given back). A server asking for
    a wait longer than the pacer's `max_wait` raises `ServerPaused`: the run stops instead
    of waiting."""
    cancel.check()
    taken: list[Reservation] = []
    try:
        with cancel.guarded(), pacer.slot(tokens) if pacer else nullcontext(_UNPACED) as held:
            taken.append(held)
            yield held
        if pacer:
            pacer.reachable()
    except openai.AuthenticationError as exc:
        raise AuthenticationError(f"the API key was refused (401): {detail(exc)}") from None
    except openai.APIStatusError as exc:
        problem = status_error(exc, pacer.server if pacer else "")
        wait = problem.retry_after
        if pacer:
            _tighten(pacer, exc.response.headers)
            if 400 <= exc.status_code < 500:
                for held in taken:
                    held.settle(0)  # a request refused (a 429 too) spent no tokens
        if pacer and (exc.status_code == 429 or (wait is not None and wait > pacer.max_wait)):
            if problem.retry_after is None:
                problem.retry_after = backoff_delay(1, base=2.0)
            # Everyone sharing the key waits, not just this worker; a wait too long to sit
            # out (a 503's too) stops the run, and the next run finds it written.
            pacer.check_pause(pacer.pause(problem.retry_after, str(problem)))
        raise problem from None
    except openai.APITimeoutError:
        server = pacer.server if pacer else "the server"
        raise ProviderError(
            f"no reply from {server} in time (--timeout; a slow local model needs more)",
            retryable=True,
        ) from None
    except openai.APIConnectionError as exc:
        # Work given up on shuts its own connection: that is no news of the server.
        cancel.check()
        server = pacer.server if pacer else "the server"
        problem = ServerUnreachable(
            f"cannot reach {server}: {_cause(exc)} (is it running? --base-url names it)"
        )
        if pacer:
            # Everyone waits and tries again; no attempt is spent on a server that is away.
            pacer.unreachable(str(problem))
        raise problem from None
    except (openai.APIResponseValidationError, ValueError) as exc:
        # openai 3.x lets a 200 with a broken JSON body out as a bare JSONDecodeError.
        raise ProviderError(f"malformed response: {exc}", retryable=True) from None


def _cause(exc: BaseException) -> str:
    """What actually failed under the client's "Connection error.": the socket's reason."""
    seen: BaseException | None = exc
    reason = str(exc)
    while seen is not None:
        text = str(seen).strip()
        if text and text != "Connection error.":
            reason = text
        seen = seen.__cause__ or seen.__context__
    return " ".join(reason.split())[:200]


def call(
    pacer: SharedPace | None,
    request: Callable[[], T],
    tokens: int = 0,
    used: Callable[[T], Any] | None = None,
) -> T:
    """`request()` in a slot. `tokens`: what it may spend at most (prompt and output cap),
    reserved of a --tpm budget; `used(result)`: the reply's usage, whose total gives the rest
    back."""
    with translated(pacer, tokens) as held:
        result = request()
        if used is not None:
            held.settle(_total_tokens(used(result)))
        return result


def request_tokens(params: Mapping[str, Any]) -> int:
    """What a chat request may spend at most: its messages' estimated tokens and its output
    cap (`max_tokens` or `max_completion_tokens`)."""
    text = "".join(str(m.get("content") or "") for m in params.get("messages") or ())
    cap = params.get("max_completion_tokens") or params.get("max_tokens") or 0
    return estimate_tokens(text) + int(cap)


def _total_tokens(usage: Any) -> int | None:
    """A reply's reported tokens (None: not reported, so nothing is given back). Some servers
    leave out the total and give its parts."""

    def count(name: str) -> int | None:
        value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    total = count("total_tokens")
    parts = count("prompt_tokens"), count("completion_tokens")
    if total is None and None not in parts:
        total = sum(p for p in parts if p is not None)
    return total


def _tighten(pacer: SharedPace, headers: Mapping[str, str]) -> None:
    """A server's own per-minute limits (`x-ratelimit-limit-requests/-tokens`) hold this
    process where they are stricter than the user's."""
    pacer.tighten(rpm=_header_number(headers, "requests"), tpm=_header_number(headers, "tokens"))


def _header_number(headers: Mapping[str, str], what: str) -> float | None:
    try:
        value = float(headers.get(f"x-ratelimit-limit-{what}") or "")
    except (TypeError, ValueError):
        return None
    return value if value > 0 and math.isfinite(value) else None
