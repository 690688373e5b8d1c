"""How long to wait before a retry: the server's headers first, else jittered backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from imaginize.pacing.backoff import backoff_delay, parse_duration, retry_after_seconds

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5", 1.5),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("-3", 0.0),
        ("20ms", 0.02),
        ("1s", 1.0),
        ("0.5s", 0.5),
        ("6m0s", 360.0),
        ("1m30.5s", 90.5),
        ("1h", 3600.0),
        ("1h2m3s", 3723.0),
        ("2m 5s", 125.0),
    ],
)
def test_parse_duration_reads_seconds_and_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "junk", ["", "soon", "5x", "s", "m5s", "5s later", "1h and 5m", "inf", "nan", "-inf"]
)
def test_parse_duration_rejects_junk_and_non_finite_numbers(junk: str) -> None:
    assert parse_duration(junk) is None


def test_retry_after_ms_wins_and_is_in_milliseconds() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "30"}
    assert retry_after_seconds(headers) == pytest.approx(1.5)


def test_a_bad_retry_after_ms_falls_back_to_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "4"}) == 4.0
    assert retry_after_seconds({"retry-after-ms": "inf", "retry-after": "4"}) == 4.0


def test_retry_after_in_seconds() -> None:
    assert retry_after_seconds({"Retry-After": "20"}) == 20.0
    assert retry_after_seconds({"retry-after": "0"}) == 0.0


def test_retry_after_as_http_date_counts_from_now() -> None:
    date = format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)
    assert date.endswith("GMT")
    assert retry_after_seconds({"Retry-After": date}, now=NOW) == pytest.approx(90.0)


def test_retry_after_as_a_past_http_date_is_no_wait() -> None:
    date = format_datetime(datetime.fromtimestamp(NOW - 600, UTC), usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now=NOW) == 0.0


@pytest.fixture
def far_timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process runs in UTC+5 (POSIX spells it "-5"), so local time is not GMT."""
    monkeypatch.setenv("TZ", "XXX-5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_timezone")
def test_retry_after_http_date_without_a_zone_is_gmt() -> None:
    assert retry_after_seconds({"Retry-After": "Wed, 01 May 2024 12:00:30"}, now=NOW) == 30.0


def test_unreadable_retry_after_falls_back_to_rate_limit_resets() -> None:
    headers = {"retry-after": "whenever", "x-ratelimit-reset-requests": "2s"}
    assert retry_after_seconds(headers, now=NOW) == 2.0
    assert retry_after_seconds({"retry-after": "whenever"}, now=NOW) is None


def test_rate_limit_resets_take_the_longer_wait() -> None:
    headers = {"x-ratelimit-reset-requests": "20ms", "x-ratelimit-reset-tokens": "6m0s"}
    assert retry_after_seconds(headers) == 360.0
    assert retry_after_seconds({"x-ratelimit-reset-tokens": "1.5"}) == 1.5


def test_unreadable_rate_limit_resets_are_ignored() -> None:
    headers = {"x-ratelimit-reset-requests": "later", "x-ratelimit-reset-tokens": "3s"}
    assert retry_after_seconds(headers) == 3.0
    assert retry_after_seconds({"x-ratelimit-reset-requests": "later"}) is None


def test_header_names_are_case_insensitive() -> None:
    assert retry_after_seconds({"Retry-After-Ms": "250"}) == 0.25
    assert retry_after_seconds({"RETRY-AFTER": "3"}) == 3.0
    assert retry_after_seconds({"X-RateLimit-Reset-Tokens": "1m"}) == 60.0


def test_no_timing_headers_means_no_advice() -> None:
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"content-type": "application/json"}) is None


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_backoff_delay_is_between_half_and_all_of_the_doubled_base(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = 0.5 * 2 ** (attempt - 1)
    delays = [backoff_delay(attempt, base=0.5, cap=1000.0, rng=rng) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    # Jittered, not constant: the spread covers most of the interval.
    assert max(delays) - min(delays) > ceiling / 4


def test_backoff_delay_is_capped() -> None:
    rng = random.Random(7)
    for attempt in (7, 10, 50, 5000):
        delay = backoff_delay(attempt, base=1.0, cap=60.0, rng=rng)
        assert 30.0 <= delay <= 60.0


def test_backoff_delay_treats_attempt_zero_like_the_first() -> None:
    rng = random.Random(1)
    assert all(1.0 <= backoff_delay(0, base=2.0, rng=rng) <= 2.0 for _ in range(50))


def test_backoff_delay_is_reproducible_with_a_seeded_random() -> None:
    first = [backoff_delay(n, rng=random.Random(42)) for n in range(1, 6)]
    second = [backoff_delay(n, rng=random.Random(42)) for n in range(1, 6)]
    assert first == second
