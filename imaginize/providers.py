"""Choosing and building the analysis provider from options and the environment.

Conventions users already know: OPENAI_API_KEY / OPENAI_BASE_URL / OPENAI_MODEL, and
OPENROUTER_API_KEY with OpenRouter's base URL. A base URL without a key means a local server
(llama.cpp, vLLM, Ollama) that wants none. With neither, the offline analyzer does the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from imaginize.analysis.base import Analyzer
from imaginize.errors import ConfigError
from imaginize.model import Book
from imaginize.pacing import Limits, Pacer, Tier

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_OPENROUTER_MODEL = "openai/gpt-4o-mini"
# Local servers ignore the key, but the client insists on one.
_NO_KEY = "not-needed"


class ProviderKind(StrEnum):
    AUTO = "auto"
    OPENAI = "openai"
    OFFLINE = "offline"


@dataclass(frozen=True)
class ProviderConfig:
    kind: ProviderKind
    model: str
    api_key: str = ""
    base_url: str | None = None
    timeout: float = 120.0
    max_output_tokens: int | None = None
    # Why this provider was chosen, for the one line said at start.
    reason: str = ""


def resolve_provider(
    kind: ProviderKind = ProviderKind.AUTO,
    *,
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float = 120.0,
    max_output_tokens: int | None = None,
    env: Mapping[str, str] | None = None,
) -> ProviderConfig:
    """Explicit arguments win over the environment; `env` defaults to nothing (not os.environ)
    so that the library is predictable and the CLI decides what the environment says."""
    env = env or {}
    key = api_key or env.get("OPENAI_API_KEY") or ""
    url = base_url or env.get("OPENAI_BASE_URL") or None
    router = False
    # The OpenRouter key goes to OpenRouter only: a base URL of some other (local) server
    # without a key means that server, which must not be sent the key or an OpenRouter model.
    if not key and env.get("OPENROUTER_API_KEY") and (url is None or _is_openrouter(url)):
        key, router = env["OPENROUTER_API_KEY"], True
        url = url or OPENROUTER_BASE_URL
    if kind is ProviderKind.OFFLINE or (kind is ProviderKind.AUTO and not key and not url):
        reason = "chosen" if kind is ProviderKind.OFFLINE else "no API key set (OPENAI_API_KEY)"
        return ProviderConfig(ProviderKind.OFFLINE, "heuristic", reason=reason)
    if not key and not url:
        raise ConfigError(
            "the openai provider needs an API key (--api-key or OPENAI_API_KEY) "
            "or a --base-url of a local server"
        )
    chosen = model or env.get("OPENAI_MODEL")
    chosen = chosen or (DEFAULT_OPENROUTER_MODEL if router else DEFAULT_OPENAI_MODEL)
    return ProviderConfig(
        ProviderKind.OPENAI,
        chosen,
        api_key=key or _NO_KEY,
        base_url=url,
        timeout=timeout,
        max_output_tokens=max_output_tokens,
        reason=f"base URL {url}" if url else "OpenAI API",
    )


def _is_openrouter(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def make_analyzer(config: ProviderConfig, book: Book, pacer: Pacer | None = None) -> Analyzer:
    if config.kind is ProviderKind.OFFLINE:
        from imaginize.analysis.offline import OfflineAnalyzer

        return OfflineAnalyzer(book)
    from imaginize.analysis.openai_chat import OpenAIAnalyzer

    return OpenAIAnalyzer(
        model=config.model,
        api_key=config.api_key,
        base_url=config.base_url,
        timeout=config.timeout,
        max_output_tokens=config.max_output_tokens,
        book_title=book.title,
        pacer=pacer,
    )


def limits_for(
    config: ProviderConfig,
    tier: str | None = None,
    *,
    batch_size: int | None = None,
    batch_delay: float | None = None,
    rpm: float | None = None,
) -> Limits | None:
    """The pace for this provider: none offline; else the tier's (free for OpenRouter's
    ':free' models unless said otherwise, paid by default) with any overrides."""
    if config.kind is not ProviderKind.OPENAI:
        return None
    chosen = Tier(tier) if tier else Tier.FREE if config.model.endswith(":free") else Tier.PAID
    return Limits.for_tier(chosen, batch_size=batch_size, batch_delay=batch_delay, rpm=rpm)
