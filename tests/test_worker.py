"""The worker loop's pieces that need no processes: its spec, its idle waits."""

from __future__ import annotations

import json
from dataclasses import fields

from imaginize.images import ImageOptions
from imaginize.pacing import Limits
from imaginize.providers import ProviderConfig, ProviderKind
from imaginize.worker import WorkerSpec

PROVIDER = ProviderConfig(ProviderKind.OPENAI, "fake", api_key="test", base_url="http://x/v1")


def test_the_spec_crosses_as_json_with_only_what_workers_use() -> None:
    spec = WorkerSpec(
        "book.epub",
        "out",
        PROVIDER,
        chapters=(1, 3),
        limits=Limits(batch_size=2, batch_delay=0.5),
        images=ImageOptions("dall-e-3", "32x32"),
    )
    assert WorkerSpec.from_json(spec.to_json()) == spec
    assert "extra" not in {f.name for f in fields(WorkerSpec)}
    assert "extra" not in json.loads(spec.to_json())
