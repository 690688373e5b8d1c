"""Choosing and building the analysis provider from options and the environment.

Conventions users already know: OPENAI_API_KEY / OPENAI_BASE_URL / OPENAI_MODEL, and
OPENROUTER_API_KEY with OpenRouter's base URL. A base URL without a key means a local server
(llama.cpp, vLLM, Ollama) that wants none. With neither, the offline analyzer does the job.

A key is sent only to a server named by a source trusted at least as far as the key's own
(`config.Trust`): a base URL from the working folder's imaginize.toml gets no key but that
file's own, so a cloned repository cannot point the user's key at its server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from imaginize.config import BUILT_IN, Origin, Trust
from imaginize.errors import ConfigError
from imaginize.settings import DEFAULT_OPENAI_MODEL, HOSTED_TIMEOUT, LOCAL_TIMEOUT

if TYPE_CHECKING:
    # Not loaded at run time: the CLI decides the provider before the rest of the library
    # is imported (cli/main.py), so this module stays small.
    from pathlib import Path

    from imaginize.analysis.base import Analyzer
    from imaginize.model import Book
    from imaginize.pacing.pace import Limits, Pacer

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
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
    timeout: float = HOSTED_TIMEOUT
    max_output_tokens: int | None = None
    # Tokens of prompt plus reply the server holds, when the user knows it (--context-size).
    context_tokens: int | None = None
    # Why this provider was chosen, for the one line said at start.
    reason: str = ""
    # Where the key came from ("env OPENAI_API_KEY", ...), for `config show`; "" for none.
    key_from: str = ""


def resolve_provider(
    kind: ProviderKind = ProviderKind.AUTO,
    *,
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_output_tokens: int | None = None,
    context_tokens: int | None = None,
    env: Mapping[str, str] | None = None,
    api_key_from: Origin | None = None,
    base_url_from: Origin | None = None,
) -> ProviderConfig:
    """Explicit arguments win over the environment; `env` defaults to nothing (not os.environ)
    so that the library is predictable and the CLI decides what the environment says.
    `api_key_from` and `base_url_from` say where the explicit values came from (the caller
    by default); a key is refused to a less trusted base URL (ConfigError naming its file)."""
    env = env or {}
    key, key_from = _pick(api_key, api_key_from, "api_key", env, "OPENAI_API_KEY")
    found, url_from = _pick(base_url, base_url_from, "base_url", env, "OPENAI_BASE_URL")
    url = found or None
    router = False
    # The OpenRouter key goes to OpenRouter only: a base URL of some other (local) server
    # without a key means that server, which must not be sent the key or an OpenRouter model.
    if not key and env.get("OPENROUTER_API_KEY") and (url is None or _is_openrouter(url)):
        key, key_from, router = env["OPENROUTER_API_KEY"], _env("OPENROUTER_API_KEY"), True
        if url is None:
            url, url_from = OPENROUTER_BASE_URL, BUILT_IN
    if kind is ProviderKind.OFFLINE or (kind is ProviderKind.AUTO and not key and not url):
        reason = "chosen" if kind is ProviderKind.OFFLINE else "no API key set (OPENAI_API_KEY)"
        return ProviderConfig(ProviderKind.OFFLINE, "heuristic", reason=reason)
    if not key and not url:
        raise ConfigError(
            "the openai provider needs an API key (--api-key or OPENAI_API_KEY) "
            "or a --base-url of a local server"
        )
    if key and url:
        _check_key_destination(key_from, url, url_from)
    chosen = model or env.get("OPENAI_MODEL")
    chosen = chosen or (DEFAULT_OPENROUTER_MODEL if router else DEFAULT_OPENAI_MODEL)
    return ProviderConfig(
        ProviderKind.OPENAI,
        chosen,
        api_key=key or _NO_KEY,
        base_url=url,
        timeout=timeout or default_timeout(url),
        max_output_tokens=max_output_tokens,
        context_tokens=context_tokens,
        reason=f"base URL {url}" if url else "OpenAI API",
        key_from=key_from.name if key else "",
    )


def default_timeout(base_url: str | None) -> float:
    return LOCAL_TIMEOUT if base_url and is_local(base_url) else HOSTED_TIMEOUT


def is_local(url: str) -> bool:
    """A server on this machine or its network (llama.cpp, Ollama, vLLM on a LAN box)."""
    host = (urlsplit(url).hostname or "").casefold()
    if host in ("localhost", "host.docker.internal") or host.endswith((".local", ".lan")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _env(name: str) -> Origin:
    return Origin(Trust.USER, f"env {name}")


def _pick(
    value: str | None, origin: Origin | None, argument: str, env: Mapping[str, str], name: str
) -> tuple[str, Origin]:
    """An explicit value with its origin (the caller's by default), else the environment's."""
    if value:
        return value, origin or Origin(Trust.USER, f"the {argument} argument")
    return env.get(name) or "", _env(name)


def _check_key_destination(key_from: Origin, url: str, url_from: Origin) -> None:
    """Refuse a key to a base URL from a less trusted source than the key's. Only the project
    file is less trusted, so this names it; `--base-url` makes the server the user's choice."""
    if url_from.trust < key_from.trust:
        raise ConfigError(
            f"{url_from.name}: refusing to send the API key from {key_from.name} to base_url "
            f"{url!r} set by this folder's settings file; give --base-url to use that server"
        )


def _is_openrouter(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def make_analyzer(
    config: ProviderConfig,
    book: Book,
    pacer: Pacer | None = None,
    *,
    hosted: bool = False,
    out_dir: Path | None = None,
) -> Analyzer:
    """`hosted`: requests built as for api.openai.com whatever the base URL (the Batch API
    is OpenAI's service; a test server for it may be on 127.0.0.1). `out_dir`: the book's
    output folder, where the offline analyzer shares its catalogue between processes."""
    if config.kind is ProviderKind.OFFLINE:
        from imaginize.analysis.offline.analyzer import OfflineAnalyzer

        return OfflineAnalyzer(book, cache_dir=out_dir)
    from imaginize.analysis.openai.chat import OpenAIAnalyzer

    return OpenAIAnalyzer(
        model=config.model,
        api_key=config.api_key,
        base_url=config.base_url,
        timeout=config.timeout,
        max_output_tokens=config.max_output_tokens,
        context_tokens=config.context_tokens,
        book_title=book.title,
        pacer=pacer,
        # Small local models invent quotes; a server's grammar can keep them to the book's.
        quote_choices=not hosted and is_local(config.base_url or ""),
    )


def limits_for(
    config: ProviderConfig,
    tier: str | None = None,
    *,
    batch_size: int | None = None,
    batch_delay: float | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
) -> Limits | None:
    """The pace for this provider: none offline; else the tier's (free for OpenRouter's
    ':free' models unless said otherwise, paid by default) with any overrides."""
    from imaginize.pacing.pace import Limits, Tier

    if config.kind is not ProviderKind.OPENAI:
        return None
    chosen = Tier(tier) if tier else Tier.FREE if config.model.endswith(":free") else Tier.PAID
    return Limits.for_tier(chosen, batch_size=batch_size, batch_delay=batch_delay, rpm=rpm, tpm=tpm)
