"""The `openai` client every analyzer and image generator of a process uses.

They share one HTTP client: building one creates a TLS context (~45 ms of CPU, loading the
certificate store), which the forkserver does once in `preload_openai` so that each forked
worker inherits it ready, with an empty connection pool of its own. The API key, timeout and
retries stay per `OpenAI` object (the SDK sends them with each request)."""

from __future__ import annotations

import functools

import openai

from imaginize.analysis.openai import http_transport
from imaginize.safetext import remember_secret


@functools.cache
def _http_client() -> openai.DefaultHttpxClient:
    # The SDK's defaults (timeouts, connection limits, redirects), not bare httpx's; its
    # connections are shut when the work they carry a request for is given up on.
    return openai.DefaultHttpxClient(transport=http_transport.transport())


def build(api_key: str, base_url: str | None, timeout: float) -> openai.OpenAI:
    """A client with the SDK's own retries off: imaginize retries through the shared pace
    (`openai_errors.call`), which honours Retry-After for every process on the key.
    The key is remembered for masking: openai >= 3.60 adds it to a request through an auth
    flow, so the request kept on an error no longer shows which key was sent."""
    remember_secret(api_key)
    return openai.OpenAI(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=0,
        http_client=_http_client(),
    )
