"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_openai import FakeOpenAI


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started local OpenAI-compatible server (see tests/fake_openai.py); stopped afterwards."""
    with FakeOpenAI() as server:
        yield server
