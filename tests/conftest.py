"""Shared fixtures."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.fake_openai import FakeOpenAI
from tests.local_servers import fakeredis_tcp, redis_server


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started local OpenAI-compatible server (see tests/fake_openai.py); stopped afterwards."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(params=["fakeredis", "redis-server"])
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis on a port of this machine: fakeredis's TCP server, and a real redis-server
    when one is on PATH (Debian: apt install redis-server)."""
    if request.param == "fakeredis":
        with fakeredis_tcp() as url:
            yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH (Debian: apt install redis-server)")
    with redis_server(binary) as url:
        yield url
