"""Preloaded by the forkserver for runs that call a server: `openai` and a built client,
everything a worker would otherwise import on its first request (inside a pacer slot, where
the delay counts against the server's rate window)."""

from __future__ import annotations

import imaginize.analysis.openai.chat
import imaginize.analysis.openai.images  # noqa: F401
from imaginize.analysis.openai import client as openai_client

# A client's resources load lazily on first use, and its HTTP client (with its TLS context) is
# shared by the process: building one here (no connection is made) loads them into the server,
# and every forked worker inherits them.
_client = openai_client.build("preload", "http://127.0.0.1:9/v1", 10.0)
_client.chat.completions  # noqa: B018
_client.images  # noqa: B018
del _client
