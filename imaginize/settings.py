"""A run's settings, and the one table of their defaults.

Every default is declared here once; the library's dataclasses, the CLI's options, the
settings file's example (`config.py`) and the modules that use a setting all read it from
here. A run's settings are composed of four parts and a few analysis options:

- `provider`: which analyzer, model, server and key (`analysis.providers.ProviderConfig`);
- `limits`: the shared request pace (`pacing.pace.Limits`; None: unpaced, e.g. offline);
- `claims`: how workers hold units of work (`ClaimPolicy`: lease, heartbeat, poll, attempts,
  lock lifetime);
- `images`: `--images` (`guides.images.ImageOptions`; None: no images).

This module imports nothing of imaginize at run time, so that anything (the CLI before it
has loaded the library, the lock module) may read the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imaginize.analysis.providers import ProviderConfig
    from imaginize.guides.images import ImageOptions
    from imaginize.pacing.pace import Limits

# --- the defaults ---------------------------------------------------------------------------

# Provider.
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
HOSTED_TIMEOUT = 120.0  # seconds to wait for one reply from a hosted API
LOCAL_TIMEOUT = 600.0  # from a server on this machine or network (a laptop's model is slow)
# Claims (README "Concurrency").
DEFAULT_LEASE = 600.0  # seconds without a heartbeat before a claim is taken over
DEFAULT_HEARTBEAT = 30.0  # seconds between a worker's heartbeats
DEFAULT_POLL = 0.2  # how often an idle worker looks again while others hold claims
DEFAULT_MAX_ATTEMPTS = 3  # tries per unit, counted across all processes
DEFAULT_LOCK_LIFETIME = 600.0  # age after which a lock file is broken whoever holds it
# Analysis.
DEFAULT_PAGES_PER_IMAGE = 1.5  # one scene per this many pages of 300 words
DEFAULT_MAX_CHUNK_TOKENS = 12_000  # longer chapters are split so no request exceeds this
DEFAULT_CHAPTER_TIMEOUT = 300.0  # at least; two replies' --timeout and a minute if longer
# Pace.
DEFAULT_MAX_WAIT = 300.0  # the longest server-asked pause sat out; longer ones stop the run
# Workers.
DEFAULT_MAX_WORKERS = 6  # the ceiling of --concurrent auto
# Images.
DEFAULT_IMAGE_MODEL = "gpt-image-1"
# --batch-api: tokens (prompt + max output of every request in open batches) a key may have
# enqueued; gpt-4o-mini at usage tier 1 allows 2,000,000, the default keeps a margin.
DEFAULT_BATCH_TOKEN_CAP = 1_800_000


@dataclass(frozen=True)
class ClaimPolicy:
    """How a worker holds a unit of work: it is taken over after `lease` seconds without a
    heartbeat (at once when its owner is provably dead), beats every `heartbeat` seconds,
    looks again every `poll` seconds while idle, tries a unit at most `max_attempts` times
    in all, and breaks a lock file older than `lock_lifetime`."""

    lease: float = DEFAULT_LEASE
    heartbeat: float = DEFAULT_HEARTBEAT
    poll: float = DEFAULT_POLL
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    lock_lifetime: float = DEFAULT_LOCK_LIFETIME

    def fitted(self) -> ClaimPolicy:
        """The policy workers run by: a claim beats three times per lease and an idle worker
        looks four times per lease, so a short lease (a library caller's `lease=1`) is never
        outlived by a live worker's silence."""
        return replace(
            self, heartbeat=min(self.heartbeat, self.lease / 3), poll=min(self.poll, self.lease / 4)
        )


@dataclass(frozen=True)
class RunSettings:
    """What every worker of a run is told, whatever the book."""

    provider: ProviderConfig
    limits: Limits | None = None
    claims: ClaimPolicy = field(default_factory=ClaimPolicy)
    images: ImageOptions | None = None
    pages_per_image: float = DEFAULT_PAGES_PER_IMAGE
    max_chunk_tokens: int = DEFAULT_MAX_CHUNK_TOKENS
    # Seconds before a chapter is given up (None: `chapter_timeout_for(provider)`).
    chapter_timeout: float | None = None
    # --max-wait: a server's pause longer than this stops the run (exit 3) instead.
    max_wait: float = DEFAULT_MAX_WAIT
    # --redis: the shared pace in Redis, for processes on several machines (None: a file).
    redis_url: str | None = None
