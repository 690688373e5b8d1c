"""The settings model and its one table of defaults (imaginize/settings.py)."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from imaginize import api, config, settings
from imaginize.analysis import pipeline
from imaginize.analysis.providers import ProviderConfig, ProviderKind, resolve_provider
from imaginize.cli import main as cli_module
from imaginize.coordination import locking
from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from imaginize.coordination.watch import ManifestWatcher
from imaginize.guides.images import ImageOptions
from imaginize.pacing import open_pacer
from imaginize.run import RunOptions, _spec
from imaginize.settings import ClaimPolicy, RunSettings
from imaginize.workers.autoscale import AutoScaler, initial_workers
from imaginize.workers.spec import WorkerSpec


def default_of(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def test_every_default_is_the_tables() -> None:
    """Each place that offers a default for a setting offers the table's: a second literal
    anywhere (the six `max_attempts = 3` there were) would drift from it."""
    claims = ClaimPolicy()
    assert (claims.lease, claims.heartbeat, claims.poll) == (
        settings.DEFAULT_LEASE,
        settings.DEFAULT_HEARTBEAT,
        settings.DEFAULT_POLL,
    )
    assert (claims.max_attempts, claims.lock_lifetime) == (
        settings.DEFAULT_MAX_ATTEMPTS,
        settings.DEFAULT_LOCK_LIFETIME,
    )
    for transition in (mf.claim,):
        assert default_of(transition, "lease") == settings.DEFAULT_LEASE
        assert default_of(transition, "max_attempts") == settings.DEFAULT_MAX_ATTEMPTS
    assert default_of(ManifestWatcher, "max_attempts") == settings.DEFAULT_MAX_ATTEMPTS
    assert default_of(ManifestStore, "lock_lifetime") == settings.DEFAULT_LOCK_LIFETIME
    assert default_of(locking.manifest_lock, "lifetime") == settings.DEFAULT_LOCK_LIFETIME
    assert default_of(open_pacer, "max_wait") == settings.DEFAULT_MAX_WAIT
    assert default_of(initial_workers, "max_workers") == settings.DEFAULT_MAX_WORKERS
    assert AutoScaler(1).max_workers == settings.DEFAULT_MAX_WORKERS
    assert ImageOptions().model == settings.DEFAULT_IMAGE_MODEL
    assert ProviderConfig(ProviderKind.OPENAI, "m").timeout == settings.HOSTED_TIMEOUT
    assert default_of(pipeline.analyze_chapter, "pages_per_image") == (
        settings.DEFAULT_PAGES_PER_IMAGE
    )
    assert default_of(pipeline.analyze_chapter, "max_chunk_tokens") == (
        settings.DEFAULT_MAX_CHUNK_TOKENS
    )
    run = RunSettings(resolve_provider())
    assert (run.claims, run.max_wait) == (claims, settings.DEFAULT_MAX_WAIT)
    assert (run.pages_per_image, run.max_chunk_tokens) == (
        settings.DEFAULT_PAGES_PER_IMAGE,
        settings.DEFAULT_MAX_CHUNK_TOKENS,
    )


def test_the_cli_and_the_settings_file_show_the_tables_defaults() -> None:
    options = {p.name: p.default for p in cli_module.run.params}
    assert options["lease"] == settings.DEFAULT_LEASE
    assert options["heartbeat"] == settings.DEFAULT_HEARTBEAT
    assert options["lock_lifetime"] == settings.DEFAULT_LOCK_LIFETIME
    assert options["max_attempts"] == settings.DEFAULT_MAX_ATTEMPTS
    assert options["pages_per_image"] == settings.DEFAULT_PAGES_PER_IMAGE
    assert options["max_chunk_tokens"] == settings.DEFAULT_MAX_CHUNK_TOKENS
    assert options["max_wait"] == settings.DEFAULT_MAX_WAIT
    assert options["max_workers"] == settings.DEFAULT_MAX_WORKERS
    assert options["image_model"] == settings.DEFAULT_IMAGE_MODEL
    # The example settings file, every line uncommented, holds the same values.
    lines = [
        line.removeprefix("# ").split("  #")[0]
        for line in config.EXAMPLE.splitlines()
        if line.startswith("[") or re.match(r"# \w+ = ", line)
    ]
    example = tomllib.loads("\n".join(lines))
    assert example["provider"]["model"] == settings.DEFAULT_OPENAI_MODEL
    assert example["provider"]["timeout"] == settings.HOSTED_TIMEOUT
    assert example["run"] | {"concurrent": None} == {
        "pages_per_image": settings.DEFAULT_PAGES_PER_IMAGE,
        "max_chunk_tokens": settings.DEFAULT_MAX_CHUNK_TOKENS,
        "max_attempts": settings.DEFAULT_MAX_ATTEMPTS,
        "chapter_timeout": settings.DEFAULT_CHAPTER_TIMEOUT,
        "concurrent": None,
        "max_workers": settings.DEFAULT_MAX_WORKERS,
    }
    assert example["rate"]["max_wait"] == settings.DEFAULT_MAX_WAIT
    assert example["coordination"] == {
        "lease": settings.DEFAULT_LEASE,
        "heartbeat": settings.DEFAULT_HEARTBEAT,
        "lock_lifetime": settings.DEFAULT_LOCK_LIFETIME,
    }
    assert example["images"]["model"] == settings.DEFAULT_IMAGE_MODEL


def test_run_options_of_sorts_flat_names_into_their_parts() -> None:
    offline = resolve_provider(ProviderKind.OFFLINE)
    options = RunOptions.of(
        provider=offline, lease=60.0, max_attempts=5, pages_per_image=2.0, chapters="1-2"
    )
    assert options.chapters == "1-2"
    assert options.settings.provider == offline
    assert options.settings.pages_per_image == 2.0
    assert options.settings.claims == ClaimPolicy(lease=60.0, max_attempts=5)
    assert RunOptions.of() == RunOptions()
    for wrong in ("leese", "settings", "claims"):
        with pytest.raises(TypeError, match=wrong):
            RunOptions.of(**{wrong: 1})


def test_analyze_book_takes_the_flat_names(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[RunOptions] = []
    monkeypatch.setattr(api, "run_book", lambda book, options, sink: seen.append(options))
    api.analyze_book("b.epub", provider="offline", lease=30.0, force=True, max_wait=5.0)
    (options,) = seen
    assert options.force
    assert options.settings.claims.lease == 30.0
    assert options.settings.max_wait == 5.0


def test_a_short_lease_fits_the_workers_beats_and_looks(tmp_path: Path) -> None:
    """A heartbeat or an idle poll longer than the lease allows would lose live claims."""
    options = RunOptions.of(provider=resolve_provider(ProviderKind.OFFLINE), lease=1.2)
    spec = _spec(tmp_path / "b.epub", tmp_path / "out", [1], options, "0" * 64)
    assert spec.settings.claims == ClaimPolicy(lease=1.2, heartbeat=0.4, poll=0.2).fitted()
    assert spec.settings.claims.heartbeat == pytest.approx(0.4)
    assert spec.settings.claims.poll == pytest.approx(0.2)
    short = _spec(tmp_path / "b.epub", tmp_path / "out", [1], RunOptions.of(lease=0.4), "")
    assert short.settings.claims.poll == pytest.approx(0.1)
    assert short.settings.chapter_timeout == settings.DEFAULT_CHAPTER_TIMEOUT
    assert WorkerSpec.from_json(short.to_json()) == short
