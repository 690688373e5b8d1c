"""A server's own account of its limits, from the `x-ratelimit-*` headers of its replies
(OpenAI, OpenRouter, Azure and most proxies send them with every response):

    x-ratelimit-limit-requests / -tokens       the per-minute limits
    x-ratelimit-remaining-requests / -tokens   what is left of them now
    x-ratelimit-reset-requests / -tokens       when that is full again ('1s', '6m0s', '20ms')

`heed` holds the pace to them: a stated limit lower than the user's `--rpm`/`--tpm` becomes
this process's limit (never a higher one: the user's settings are a ceiling), and a budget
the server says is used up (remaining 0) pauses every process on the key until its reset,
as a 429 would, without spending the 429. What is not done: the remaining counts are a
snapshot that requests in flight have already spent from, so they are not used to pace
requests finer than that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from imaginize.pacing.backoff import parse_duration
from imaginize.pacing.pace import SharedPace


@dataclass(frozen=True)
class StatedLimits:
    requests: float | None = None
    tokens: float | None = None
    remaining_requests: float | None = None
    remaining_tokens: float | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> StatedLimits | None:
        """The limits a reply's headers state, or None when they state none."""
        if not headers:
            return None
        lower = {str(k).lower(): str(v) for k, v in headers.items()}

        def number(name: str) -> float | None:
            try:
                value = float(lower.get(f"x-ratelimit-{name}", ""))
            except ValueError:
                return None
            return value if value >= 0 and math.isfinite(value) else None

        def duration(name: str) -> float | None:
            raw = lower.get(f"x-ratelimit-reset-{name}")
            return parse_duration(raw) if raw else None

        stated = cls(
            number("limit-requests"),
            number("limit-tokens"),
            number("remaining-requests"),
            number("remaining-tokens"),
            duration("requests"),
            duration("tokens"),
        )
        return None if stated == cls() else stated

    def used_up(self) -> float:
        """Seconds until a budget the server says is spent (remaining 0) is full again;
        0 when none is spent."""
        waits = [
            reset or 1.0
            for left, reset in (
                (self.remaining_requests, self.reset_requests),
                (self.remaining_tokens, self.reset_tokens),
            )
            if left is not None and left < 1
        ]
        return max(waits, default=0.0)

    def text(self) -> str:
        """`server: 500 rpm (499 left), 200,000 tpm (198,000 left)` for [PERF] lines."""
        parts = []
        for limit, left, unit in (
            (self.requests, self.remaining_requests, "rpm"),
            (self.tokens, self.remaining_tokens, "tpm"),
        ):
            if limit is None and left is None:
                continue
            shown = f"{limit:,.0f} {unit}" if limit is not None else unit
            parts.append(f"{shown} ({left:,.0f} left)" if left is not None else shown)
        return "server: " + ", ".join(parts) if parts else ""


def heed(pacer: SharedPace, stated: StatedLimits) -> None:
    """Hold this process to the server's stated limits where they are stricter than its
    own, and pause everyone on the key while the server says a budget is used up."""
    # A limit stated as 0 is no limit we can keep to: `tighten` ignores it.
    pacer.tighten(rpm=stated.requests, tpm=stated.tokens)
    wait = stated.used_up()
    if wait > 0:
        pacer.pause(wait, f"{pacer.server} says its per-minute budget is used up")
