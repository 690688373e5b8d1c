"""The worker loop's pieces that need no processes: its spec, its idle waits."""

from __future__ import annotations

import json
import time
from dataclasses import fields, replace
from pathlib import Path

from imaginize import manifest as mf
from imaginize.images import ImageOptions
from imaginize.pacing import Limits
from imaginize.providers import ProviderConfig, ProviderKind
from imaginize.store import ManifestStore
from imaginize.worker import WorkerSpec, _claim_next

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


def idle_store(tmp_path: Path, now: float) -> ManifestStore:
    """Chapter 1 held by this live process; 2 out of attempts with its retry time passed; 3
    (not wanted) retryable and due; 4 retryable, due in 0.05 s."""
    store = ManifestStore(tmp_path, clock=lambda: now)
    store.join(
        book_path="book.epub",
        sha256="0" * 64,
        title="Book",
        chapters=[(n, f"Chapter {n}") for n in (1, 2, 3, 4)],
    )

    def setup(m: mf.Manifest) -> tuple[mf.Manifest, None]:
        m, _ = mf.claim(m, mf.owner_id("w9"), now, wanted=[1])
        failed = {2: (3, now - 5), 3: (1, now - 5), 4: (1, now + 0.05)}
        for number, (attempts, retry_at) in failed.items():
            entry = replace(
                m.entry(number),
                status=mf.Status.FAILED,
                attempts=attempts,
                retryable=True,
                retry_at=retry_at,
                token=m.next_token,
            )
            m = replace(m.with_entry(entry), next_token=m.next_token + 1)
        return m, None

    store.transact(setup)
    return store


def test_an_idle_worker_waits_for_retries_it_may_still_claim(tmp_path: Path) -> None:
    now = time.time()
    store = idle_store(tmp_path, now)
    spec = WorkerSpec("book.epub", str(tmp_path), PROVIDER, poll=0.2, max_attempts=3)
    # Chapter 2 is failed for good and 3 is not wanted: neither is a reason to wake early.
    wait = _claim_next(store, spec, mf.owner_id("w1"), (1, 2), lambda: False)
    assert wait == 0.2
    # A retry due soon among the wanted ones is.
    wait = _claim_next(store, spec, mf.owner_id("w1"), (1, 2, 4), lambda: False)
    assert isinstance(wait, float) and 0.04 <= wait <= 0.05
