"""How long to wait before trying a request again: the server's word first, else backoff."""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import re
import time
from collections.abc import Mapping

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float | None:
    """'1.5', '20ms', '6m0s' (OpenAI's x-ratelimit-reset-* format) -> seconds."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf" or "nan" would mean waiting forever (or a retry time JSON cannot store).
        return max(0.0, seconds) if math.isfinite(seconds) else None
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a 429/503 response asks for, from the headers servers actually send."""
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            millis = float(lower["retry-after-ms"])
        except ValueError:
            millis = math.nan
        if math.isfinite(millis):
            return max(0.0, millis / 1000)
    if "retry-after" in lower:
        raw = lower["retry-after"]
        seconds = parse_duration(raw)
        if seconds is not None:
            return seconds
        try:
            date = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            when = None
        else:
            # HTTP dates are GMT; a zone-less one would otherwise be read as local time.
            if date.tzinfo is None:
                date = date.replace(tzinfo=datetime.UTC)
            when = date.timestamp()
        if when is not None:
            return max(0.0, when - (time.time() if now is None else now))
    resets = [
        parse_duration(lower[k])
        for k in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if k in lower
    ]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


def backoff_delay(
    attempt: int, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Backoff for attempt 1, 2, ...: uniform in [c/2, c] with c = base * 2**(attempt-1).

    Half the delay is kept so retries never bunch at zero; the other half spreads processes.
    """
    # The exponent is bounded: 2 ** 2000 does not fit a float, and the cap applies long before.
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), 64))
    return (rng or random).uniform(ceiling / 2, ceiling)
