"""Request pacing shared by every process that uses one API key: the file pace
(`pace.Pacer`, one host) and the Redis pace (`redis_pace.RedisPacer`, many hosts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from imaginize.pacing.pace import DEFAULT_MAX_WAIT, Limits, Pacer, SharedPace


def open_pacer(
    folder: Path,
    limits: Limits,
    *,
    redis_url: str | None = None,
    digest: str = "",
    max_wait: float = DEFAULT_MAX_WAIT,
    server: str = "the server",
    notice: Callable[[str], None] = lambda line: None,
    check: bool = False,
) -> SharedPace:
    """The one place a backend is chosen: Redis when a URL is given, else the file pace in
    `folder`. `digest` (`pace_digest`) names the Redis keys; `notice` gets one line when
    Redis goes away and one when it is back; `check`: a Redis that does not answer now is
    a ConfigError (the run's start) rather than waited for (a worker's)."""
    if redis_url:
        from imaginize.pacing.redis_pace import RedisPacer  # redis is an optional dependency

        return RedisPacer(
            redis_url,
            digest,
            limits,
            max_wait=max_wait,
            server=server,
            notice=notice,
            check=check,
        )
    return Pacer(folder, limits, max_wait=max_wait, server=server)
