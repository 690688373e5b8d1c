"""A responder for the fake server: `tests.replies:answer` plus a fixed reply latency.

The fake server applies a step's "delay" before answering, but `tests.replies:answer` returns
steps without one, so this wraps it. The latency comes from IMAGINIZE_BENCH_DELAY (seconds,
default 0.5), read in the server process, which inherits the benchmark's environment.
Use it as `"responder": "benchmarks.slow_replies:answer"` in a fake-server script.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tests.replies import answer as valid_answer

DELAY_ENV = "IMAGINIZE_BENCH_DELAY"


def answer(body: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**valid_answer(body), "delay": float(os.environ.get(DELAY_ENV, "0.5"))}
