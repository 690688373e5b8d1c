"""What one OpenAI-compatible server accepts, learned from its answers and kept for the run.

Servers differ in what they can be asked for: OpenAI, vLLM, llama.cpp's llama-server and recent
Ollama constrain replies to a JSON schema; llama-cpp-python takes a schema inside a
`json_object` format; some only know `json_object`; some reject `response_format` altogether.
Their context size is rarely announced but is named in the 400 that a too-long request gets.
Each process learns these once per server (and model) and remembers them, so a run asks its
questions once and never turns a capability off because of one unrelated error.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from imaginize.analysis.openai.errors import StatusError
from imaginize.analysis.openai.reply_schema import SCHEMA_NAME, reply_schema


class ReplyFormat(StrEnum):
    """How replies are constrained, best first."""

    JSON_SCHEMA = "json_schema"
    JSON_OBJECT_SCHEMA = "json_object+schema"
    JSON_OBJECT = "json_object"
    PLAIN = "plain prompting"

    def response_format(self, quotes: Sequence[str] = (), scenes: int = 0) -> dict[str, Any] | None:
        """The `response_format` request field for this format (None: not sent). Where the
        format carries a schema, `quotes` limits scenes' quotes to those passages and
        `scenes` their number (a local server's grammar; see `reply_schema`)."""
        match self:
            case ReplyFormat.JSON_SCHEMA:
                schema = reply_schema(quotes=quotes, scenes=scenes)
                return {
                    "type": "json_schema",
                    "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema},
                }
            case ReplyFormat.JSON_OBJECT_SCHEMA:
                return {
                    "type": "json_object",
                    "schema": reply_schema(string_bounds=True, quotes=quotes, scenes=scenes),
                }
            case ReplyFormat.JSON_OBJECT:
                return {"type": "json_object"}
            case ReplyFormat.PLAIN:
                return None


LADDER = tuple(ReplyFormat)


@dataclass
class ServerState:
    """What is known of one server and model in this process."""

    format: ReplyFormat = LADDER[0]
    # A format that has been answered with a 200 is never given up for a later error.
    confirmed: bool = False
    # Unexplained 5xx answers to the untried format: the second one moves down the ladder.
    strikes: int = 0
    # Tokens of prompt plus reply the server can hold, when it has said so.
    context_tokens: int | None = None
    # Streamed requests, and the usage chunk at their end, until the server refuses them.
    streaming: bool = True
    stream_usage: bool = True
    # "max_tokens", or "max_completion_tokens" for models that refuse the older name.
    max_tokens_field: str = "max_tokens"
    said: set[str] = field(default_factory=set)

    def step_down(self) -> ReplyFormat | None:
        """Move to the next format of the ladder; None when there is none left."""
        index = LADDER.index(self.format)
        if index + 1 >= len(LADDER):
            return None
        self.format, self.confirmed, self.strikes = LADDER[index + 1], False, 0
        return self.format


_states: dict[tuple[str, str], ServerState] = {}
_states_lock = threading.Lock()


def state_for(base_url: str | None, model: str) -> ServerState:
    """The one state of this server and model in this process (shared by its analyzers)."""
    key = (base_url or "https://api.openai.com/v1", model)
    with _states_lock:
        return _states.setdefault(key, ServerState())


_FORMAT_WORDS = re.compile(
    r"response_format|response format|json_schema|json_object|json schema|schema|grammar|"
    r"structured output",
    re.I,
)


def rejects_format(error: StatusError, state: ServerState) -> bool:
    """Whether `error` answers the reply format rather than the request as a whole.

    A format the server has already answered with a 200 is kept whatever comes later. A new
    one is given up on an error that names it, on a 4xx that is not about the context size,
    or on a second unexplained 5xx: one 500 of a server having a bad moment must not turn
    structured output off for the rest of the run."""
    if state.format is ReplyFormat.PLAIN or context_limit(error) is not None:
        return False
    if is_context_error(error) or names_max_tokens(error):
        return False
    if _FORMAT_WORDS.search(str(error)):
        return error.status in {400, 415, 422, 500, 501}
    if state.confirmed:
        return False
    if error.status in {400, 422, 501}:
        return True
    if error.status >= 500:
        state.strikes += 1
        return state.strikes >= 2
    return False


_CONTEXT_LIMIT = (
    re.compile(r"maximum context length is (\d+)", re.I),  # OpenAI, vLLM, OpenRouter
    re.compile(r"context (?:window|length|size) (?:of|is) (\d+)", re.I),  # llama-cpp-python
    re.compile(r"\bn_ctx\D{0,12}(\d+)", re.I),  # llama.cpp's llama-server
    re.compile(r"context size \((\d+)", re.I),
)
_CONTEXT_WORDS = re.compile(
    r"context[_ ]length|context (?:window|size)|exceed_context|too many tokens|"
    r"prompt is too long|reduce the length",
    re.I,
)


def context_limit(error: StatusError) -> int | None:
    """The context size a 400 names ("maximum context length is 8192 tokens"), if any."""
    if error.status not in {400, 413, 422}:
        return None
    text = f"{error} {error.code}"
    for pattern in _CONTEXT_LIMIT:
        found = pattern.search(text)
        if found and 64 <= int(found.group(1)) <= 100_000_000:
            return int(found.group(1))
    return None


def is_context_error(error: StatusError) -> bool:
    """A request too long for the server, whether or not it says by how much."""
    return error.status in {400, 413, 422} and bool(_CONTEXT_WORDS.search(f"{error} {error.code}"))


def names_max_tokens(error: StatusError) -> bool:
    """A model that refuses `max_tokens` and wants `max_completion_tokens` (OpenAI's
    reasoning models)."""
    return error.status == 400 and "max_completion_tokens" in str(error)
