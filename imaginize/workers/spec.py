"""What a worker is told about one book: a `WorkerSpec`, pickled to forked workers and sent
as JSON to a stand-alone one."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from imaginize.analysis.pipeline import DEFAULT_MAX_CHUNK_TOKENS, DEFAULT_PAGES_PER_IMAGE
from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.coordination import manifest as mf
from imaginize.coordination.locking import DEFAULT_LOCK_LIFETIME
from imaginize.guides.images import ImageOptions
from imaginize.pacing.pace import DEFAULT_MAX_WAIT, Limits

DEFAULT_HEARTBEAT = 30.0
DEFAULT_CHAPTER_TIMEOUT = 300.0


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to know about one book. The launcher's forked workers get
    it pickled, with the parsed Book; the stand-alone worker (`python -m imaginize.workers.worker`)
    reads it as JSON on stdin (`to_json` / `from_json`)."""

    book_path: str
    out_dir: str
    provider: ProviderConfig
    chapters: tuple[int, ...] | None = None
    pages_per_image: float = DEFAULT_PAGES_PER_IMAGE
    max_chunk_tokens: int = DEFAULT_MAX_CHUNK_TOKENS
    max_attempts: int = 3
    lease: float = mf.DEFAULT_LEASE
    heartbeat: float = DEFAULT_HEARTBEAT
    lock_lifetime: float = DEFAULT_LOCK_LIFETIME
    # How often an idle worker looks again (without the lock) while others hold claims.
    poll: float = 0.2
    # Shared request pacing (None: unpaced, e.g. the offline analyzer), kept in `pace_dir`
    # (one per API key; the output folder when None).
    limits: Limits | None = None
    pace_dir: str | None = None
    chapter_timeout: float = DEFAULT_CHAPTER_TIMEOUT
    # --max-wait: the longest pause a server may ask for that is waited out, not a stop.
    max_wait: float = DEFAULT_MAX_WAIT
    # --images: one illustration per scene once its chapter is done (openai provider only).
    images: ImageOptions | None = None
    # Diagnostics: a file that gets "number token owner" appended for each published result.
    journal: str | None = None
    # The book's sha256, stamped on every result file so no other book ever adopts it
    # (empty: the worker takes the one its manifest records).
    book_sha256: str = ""
    # --redis: the pace is kept in this Redis instead of `pace_dir`.
    redis_url: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["provider"]["kind"] = self.provider.kind.value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        provider = data.pop("provider")
        provider["kind"] = ProviderKind(provider["kind"])
        chapters = data.pop("chapters")
        limits = data.pop("limits")
        images = data.pop("images", None)
        return cls(
            provider=ProviderConfig(**provider),
            limits=None if limits is None else Limits(**limits),
            images=None if images is None else ImageOptions(**images),
            chapters=None if chapters is None else tuple(chapters),
            **data,
        )
