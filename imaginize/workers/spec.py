"""What a worker is told about one book: a `WorkerSpec`, the book plus the run's settings,
pickled to forked workers and sent as JSON to a stand-alone one."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.guides.images import ImageOptions
from imaginize.pacing.pace import Limits
from imaginize.settings import ClaimPolicy, RunSettings


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to know about one book. The launcher's forked workers get
    it pickled, with the parsed Book; the stand-alone worker (`python -m imaginize.workers.worker`)
    reads it as JSON on stdin (`to_json` / `from_json`)."""

    book_path: str
    out_dir: str
    # The run's settings, with the derived values made (`run.py`): a resolved chapter
    # timeout and a claim policy fitted to its lease.
    settings: RunSettings
    chapters: tuple[int, ...] | None = None
    # The book's sha256, stamped on every result file so no other book ever adopts it
    # (empty: the worker takes the one its manifest records).
    book_sha256: str = ""
    # Where the shared pace is kept (one folder per API key; the output folder when None).
    pace_dir: str | None = None
    # Diagnostics: a file that gets "number token owner" appended for each published result.
    journal: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["settings"]["provider"]["kind"] = self.settings.provider.kind.value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        settings = data.pop("settings")
        provider = settings.pop("provider")
        provider["kind"] = ProviderKind(provider["kind"])
        limits, images = settings.pop("limits"), settings.pop("images")
        chapters = data.pop("chapters")
        return cls(
            settings=RunSettings(
                provider=ProviderConfig(**provider),
                limits=None if limits is None else Limits(**limits),
                claims=ClaimPolicy(**settings.pop("claims")),
                images=None if images is None else ImageOptions(**images),
                **settings,
            ),
            chapters=None if chapters is None else tuple(chapters),
            **data,
        )
