"""The manifest's pure state transitions (coordination/manifest.py) against manifest-format.md.

Time and liveness are injected: `now` is a number and `is_dead` a predicate, so nothing here
sleeps or depends on real processes, except the owner tests at the end, which spawn and reap
a real child to get a pid that provably no longer runs.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from imaginize.coordination import manifest as mf
from imaginize.coordination.manifest import Entry, Manifest, Status

LEASE = 100.0
MAX = 3
DOC = Path(__file__).resolve().parent.parent / "manifest-format.md"


def alive(_owner: str) -> bool:
    return False


def dead(_owner: str) -> bool:
    return True


def book(n: int = 3, now: float = 0.0) -> Manifest:
    return mf.new_manifest(
        "/books/b.epub", "ab" * 32, "B", [(i, f"C{i}") for i in range(1, n + 1)], now
    )


def take(
    m: Manifest,
    owner: str = "h:1:w1",
    now: float = 0.0,
    *,
    is_dead: mf.DeadCheck = alive,
    wanted: list[int] | None = None,
    max_attempts: int = MAX,
) -> tuple[Manifest, mf.Claim]:
    m2, got = mf.claim(
        m, owner, now, lease=LEASE, max_attempts=max_attempts, is_dead=is_dead, wanted=wanted
    )
    assert got is not None
    return m2, got


def no_claim(
    m: Manifest, now: float, *, is_dead: mf.DeadCheck = alive, wanted: list[int] | None = None
) -> Manifest:
    m2, got = mf.claim(
        m, "h:9:probe", now, lease=LEASE, max_attempts=MAX, is_dead=is_dead, wanted=wanted
    )
    assert got is None
    return m2


# --- claim ------------------------------------------------------------------------------------


def test_claims_go_in_book_order_then_nothing() -> None:
    m = book(3)
    numbers = []
    for i in range(3):
        m, got = take(m, f"h:1:w{i}", now=float(i))
        numbers.append(got.number)
        assert got.reason == "pending"
        assert got.attempt == 1
    assert numbers == [1, 2, 3]
    no_claim(m, 3.0)


def test_claim_sets_the_fields_the_doc_names() -> None:
    m, got = take(book(2), "h:1:w1", now=42.0)
    e = m.entry(1)
    assert e.status is Status.IN_PROGRESS
    assert e.owner == "h:1:w1"
    assert e.claimed_at == e.heartbeat_at == 42.0
    assert e.attempts == 1
    assert e.token == got.token == 1
    assert m.next_token == 2
    assert m.entry(2) == Entry(2, "C2")


def test_claim_respects_wanted_and_keeps_book_order_among_them() -> None:
    m = book(5)
    m, a = take(m, wanted=[4, 2])
    m, b = take(m, wanted=[4, 2])
    assert (a.number, b.number) == (2, 4)
    no_claim(m, 0.0, wanted=[2, 4])
    assert m.entry(1).status is Status.PENDING


def test_tokens_strictly_increase_across_claims_reclaims_and_retries() -> None:
    m = book(2)
    seen = []
    m, c = take(m, now=0.0)
    seen.append(c.token)
    m, _ = mf.fail(m, c.number, c.token, 1.0, "x", retryable=True, retry_at=2.0)
    m, c = take(m, now=2.0)  # retry of 1
    assert c.reason == "retry"
    seen.append(c.token)
    m, c = take(m, now=3.0)  # chapter 2
    seen.append(c.token)
    m, c = take(m, "h:2:w2", now=3.0 + LEASE + 1, wanted=[2])  # reclaim of stale 2
    seen.append(c.token)
    assert seen == sorted(set(seen))
    assert m.next_token == seen[-1] + 1
    assert max(e.token for e in m.chapters) < m.next_token


def test_attempts_count_claims_and_release_gives_one_back() -> None:
    m = book(1)
    m, c = take(m)
    assert m.entry(1).attempts == 1
    m, ok = mf.release(m, 1, c.token)
    assert ok
    e = m.entry(1)
    assert (e.status, e.owner, e.attempts) == (Status.PENDING, None, 0)
    m, c = take(m, now=1.0)
    assert c.attempt == 1
    m, _ = mf.fail(m, 1, c.token, 2.0, "net", retryable=True)
    m, c = take(m, now=2.0)
    assert c.attempt == m.entry(1).attempts == 2


# --- fencing ----------------------------------------------------------------------------------


def test_wrong_or_old_token_changes_nothing() -> None:
    m, old = take(book(1), "h:1:old", now=0.0)
    m, new = take(m, "h:2:new", now=LEASE + 1)  # the old claim went stale and was reclaimed
    assert new.number == old.number and new.token > old.token
    for token in (old.token, new.token + 1, 0):
        assert mf.heartbeat(m, 1, token, 500.0) == (m, False)
        assert mf.complete(m, 1, token, 500.0, 7) == (m, False)
        assert mf.fail(m, 1, token, 500.0, "boom", retryable=True) == (m, False)
        assert mf.release(m, 1, token) == (m, False)
    # The current holder still can.
    m2, ok = mf.heartbeat(m, 1, new.token, 500.0)
    assert ok and m2.entry(1).heartbeat_at == 500.0


def test_completed_is_final_for_workers() -> None:
    m, c = take(book(1))
    m, ok = mf.complete(m, 1, c.token, 5.0, tokens=123)
    assert ok
    e = m.entry(1)
    assert (e.status, e.owner, e.completed_at, e.tokens) == (Status.COMPLETED, None, 5.0, 123)
    for attempt in (
        mf.heartbeat(m, 1, c.token, 6.0),
        mf.complete(m, 1, c.token, 6.0, 1),
        mf.fail(m, 1, c.token, 6.0, "late"),
        mf.release(m, 1, c.token),
    ):
        assert attempt == (m, False)
    # Whatever the clock, lease or liveness, nobody claims it again.
    no_claim(m, 10 * LEASE, is_dead=dead)
    assert mf.retry_failed(m) == m


def test_failed_chapter_has_no_owner_and_keeps_the_reason() -> None:
    m, c = take(book(1))
    m, ok = mf.fail(m, 1, c.token, 1.0, "HTTP 503", retryable=True, retry_at=30.0)
    assert ok
    e = m.entry(1)
    assert (e.status, e.owner, e.error, e.retryable, e.retry_at) == (
        Status.FAILED,
        None,
        "HTTP 503",
        True,
        30.0,
    )
    m, _ = take(m, now=30.0)
    m, ok = mf.fail(m, 1, m.entry(1).token, 31.0, "bad key", retry_at=99.0)
    assert ok and m.entry(1).retry_at is None and not m.entry(1).retryable


# --- failed and retry -------------------------------------------------------------------------


def test_failed_retryable_is_claimable_only_after_retry_at() -> None:
    m, c = take(book(1))
    m, _ = mf.fail(m, 1, c.token, 1.0, "429", retryable=True, retry_at=50.0)
    no_claim(m, 49.999)
    m, got = take(m, now=50.0)
    assert got.reason == "retry" and got.number == 1


def test_failed_retryable_without_retry_at_is_claimable_at_once() -> None:
    m, c = take(book(1))
    m, _ = mf.fail(m, 1, c.token, 1.0, "timeout", retryable=True)
    m, got = take(m, now=1.0)
    assert got.reason == "retry"


def test_failed_not_retryable_is_never_claimable() -> None:
    m, c = take(book(1))
    m, _ = mf.fail(m, 1, c.token, 1.0, "bad request", retryable=False)
    no_claim(m, 1e9, is_dead=dead)


def test_failed_retryable_stops_at_max_attempts() -> None:
    m = book(1)
    now = 0.0
    for attempt in range(1, MAX + 1):
        m, c = take(m, now=now)
        assert c.attempt == attempt
        m, _ = mf.fail(m, 1, c.token, now, "503", retryable=True, retry_at=now)
        now += 1
    assert m.entry(1).attempts == MAX
    no_claim(m, now + 1e6)
    # A claimant allowed more attempts may go on: the limit is the claimant's --max-attempts.
    _, c = take(m, now=now, max_attempts=MAX + 1)
    assert c.attempt == MAX + 1


# --- stale claims -----------------------------------------------------------------------------


def test_stale_by_heartbeat_age() -> None:
    m, c = take(book(1), "h:1:w1", now=0.0)
    # "older than the lease": exactly the lease is still live.
    no_claim(m, LEASE)
    m, _ = mf.heartbeat(m, 1, c.token, 60.0)
    no_claim(m, 60.0 + LEASE)
    m2, got = take(m, "h:2:w2", now=60.0 + LEASE + 0.5)
    assert got.number == 1 and got.token > c.token and got.attempt == 2
    assert got.reason.startswith("no heartbeat")
    e = m2.entry(1)
    assert e.owner == "h:2:w2" and e.heartbeat_at == 60.0 + LEASE + 0.5
    assert e.error is not None and e.error.startswith("reclaimed:")


def test_stale_by_dead_owner_at_once() -> None:
    m, c = take(book(1), "h:1:gone", now=0.0)
    seen: list[str] = []

    def is_dead(owner: str) -> bool:
        seen.append(owner)
        return owner == "h:1:gone"

    no_claim(m, 1.0)  # alive by default: not stale yet
    _, got = take(m, "h:2:w2", now=1.0, is_dead=is_dead)
    assert got.number == 1 and got.token > c.token
    assert "h:1:gone" in seen and "no longer running" in got.reason


def test_a_heartbeat_in_the_future_counts_as_now_and_ages_from_there() -> None:
    # Another host's clock runs a day ahead: its claim's heartbeat lies in our future.
    day = 86_400.0
    m, c = take(book(1), "fast:1:w1", now=day)
    # An idle worker's look without the lock sends it to take the lock for this entry...
    assert mf.claimable_reason(m.entry(1), 10.0, LEASE, MAX, alive) is not None
    # ...where the judge does not take the claim but records its heartbeat as now.
    m = no_claim(m, 10.0)
    e = m.entry(1)
    assert (e.status, e.owner, e.token, e.heartbeat_at) == (
        Status.IN_PROGRESS,
        "fast:1:w1",
        c.token,
        10.0,
    )
    assert mf.claimable_reason(e, 10.0, LEASE, MAX, alive) is None
    # Its owner never beats again (gone with its host): a lease later it is taken over.
    no_claim(m, 10.0 + LEASE)
    _, got = take(m, "h:2:w2", now=10.0 + LEASE + 0.5)
    assert got.number == 1 and got.token > c.token and got.reason.startswith("no heartbeat")
    # An owner that keeps beating (from its clock ahead) keeps its claim.
    beating, ok = mf.heartbeat(m, 1, c.token, day + 50.0)
    assert ok
    no_claim(beating, 10.0 + LEASE + 0.5)


def test_live_claim_of_a_live_owner_is_not_taken() -> None:
    m, _ = take(book(1), now=0.0)
    no_claim(m, LEASE / 2)
    assert mf.is_stale(m.entry(1), LEASE / 2, LEASE, alive) is None


def test_stale_claim_at_max_attempts_is_abandoned_as_failed() -> None:
    m = book(2)
    now = 0.0
    for _ in range(MAX):  # each worker dies holding chapter 1
        m, c = take(m, f"h:{int(now)}:w", now=now, wanted=[1])
        now += LEASE + 1
    assert m.entry(1).attempts == MAX
    before = m.entry(1)
    m, got = take(m, "h:99:w", now=now)
    assert got.number == 2  # chapter 1 was skipped ...
    e = m.entry(1)
    assert e.status is Status.FAILED and not e.retryable and e.owner is None  # ... and failed
    assert e.attempts == MAX and e.token == before.token
    assert e.error is not None and e.error.startswith(f"abandoned: its worker stopped {MAX} times")
    # The last worker, should it come back, can no longer touch it.
    assert mf.complete(m, 1, c.token, now, 1) == (m, False)
    assert mf.settled(m, MAX, [1])


def test_claim_with_nothing_claimable_still_records_abandonment() -> None:
    m, _ = take(book(1), now=0.0, max_attempts=1)
    m2, got = mf.claim(m, "h:2:w", LEASE + 1, lease=LEASE, max_attempts=1, is_dead=alive)
    assert got is None
    assert m2.entry(1).status is Status.FAILED
    assert m2.next_token == m.next_token


# --- user actions -----------------------------------------------------------------------------


def mixed() -> Manifest:
    """Chapter 1 completed, 2 failed (retryable), 3 failed (not), 4 in progress, 5 pending."""
    m = book(5)
    m, c1 = take(m)
    m, c2 = take(m)
    m, c3 = take(m)
    m, c4 = take(m)
    m, _ = mf.complete(m, 1, c1.token, 1.0, 10)
    m, _ = mf.fail(m, 2, c2.token, 1.0, "503", retryable=True, retry_at=99.0)
    m, _ = mf.fail(m, 3, c3.token, 1.0, "400")
    assert m.entry(4).token == c4.token
    return m


def test_retry_failed_resets_failed_only() -> None:
    m = mixed()
    r = mf.retry_failed(m)
    for n in (2, 3):
        e = r.entry(n)
        assert (e.status, e.attempts, e.retryable, e.retry_at, e.owner) == (
            Status.PENDING,
            0,
            False,
            None,
            None,
        )
        assert e.token == m.entry(n).token
    for n in (1, 4, 5):
        assert r.entry(n) == m.entry(n)
    assert r.next_token == m.next_token
    only3 = mf.retry_failed(m, [3, 4, 1])
    assert only3.entry(2) == m.entry(2)
    assert only3.entry(3).status is Status.PENDING


def test_force_pending_reopens_finished_but_not_in_progress() -> None:
    m = mixed()
    f = mf.force_pending(m, [1, 2, 3, 4, 5])
    for n in (1, 2, 3):
        e = f.entry(n)
        assert (e.status, e.attempts, e.completed_at, e.error, e.owner) == (
            Status.PENDING,
            0,
            None,
            None,
            None,
        )
    assert f.entry(4) == m.entry(4)  # in_progress: untouched
    assert f.entry(5) == m.entry(5)
    assert f.next_token == m.next_token
    assert mf.force_pending(m, [2]).entry(1) == m.entry(1)  # only the selected ones


def test_reconcile_adds_missing_chapters_in_order() -> None:
    m = mf.new_manifest("/b", "h", "T", [(1, "A"), (3, "C")], 0.0)
    m, _ = take(m)
    r = mf.reconcile(m, [(1, "A"), (2, "B"), (3, "C"), (4, "D")], {})
    assert [e.number for e in r.chapters] == [1, 2, 3, 4]
    assert r.entry(2) == Entry(2, "B") and r.entry(4) == Entry(4, "D")
    assert r.entry(1) == m.entry(1) and r.entry(3) == m.entry(3)
    assert r.next_token == m.next_token


def test_reconcile_aligns_completed_with_result_files() -> None:
    m = mixed()
    # 1 completed but its file is gone; 2, 4 and 5 have a result file; 3 has none.
    r = mf.reconcile(m, [(n, f"C{n}") for n in range(1, 6)], {2: 20, 4: 40, 5: 50})
    e1 = r.entry(1)
    assert (e1.status, e1.attempts, e1.completed_at) == (Status.PENDING, 0, None)
    for n, tokens in ((2, 20), (4, 40), (5, 50)):
        e = r.entry(n)
        assert (e.status, e.owner, e.error, e.retryable, e.retry_at, e.tokens) == (
            Status.COMPLETED,
            None,
            None,
            False,
            None,
            tokens,
        )
        assert e.completed_at is not None
        assert e.token == m.entry(n).token
    assert r.entry(3) == m.entry(3)  # nothing else changes
    assert r.next_token == m.next_token
    # Joining again with the same files changes nothing.
    assert mf.reconcile(r, [(n, f"C{n}") for n in range(1, 6)], {2: 20, 4: 40, 5: 50}) == r


def test_reconcile_leaves_a_consistent_manifest_alone() -> None:
    m = mixed()
    assert mf.reconcile(m, [(n, f"C{n}") for n in range(1, 6)], {1: 10}) == m


def test_settled() -> None:
    m = mixed()
    assert not mf.settled(m, MAX)  # 2 may be retried, 4 is running, 5 pending
    assert mf.settled(m, MAX, [1, 3])
    assert not mf.settled(m, MAX, [2])
    assert mf.settled(m, 1, [2])  # attempts exhausted for a claimant allowing one
    assert not mf.settled(m, MAX, [4])
    assert not mf.settled(m, MAX, [5])
    assert mf.settled(m, MAX, [])


def test_failed_for_good_and_retry_pending() -> None:
    m = mixed()
    # 2 failed retryable with 1 attempt, 3 failed not retryable; the others did not fail.
    assert [n for n in range(1, 6) if mf.retry_pending(m.entry(n), MAX)] == [2]
    assert [n for n in range(1, 6) if mf.failed_for_good(m.entry(n), MAX)] == [3]
    # A retryable failure is for good once the claimant's attempts are used up.
    assert mf.failed_for_good(m.entry(2), 1) and not mf.retry_pending(m.entry(2), 1)
    for n in range(1, 6):
        e = m.entry(n)
        for limit in (1, MAX):
            failed = mf.retry_pending(e, limit) or mf.failed_for_good(e, limit)
            assert failed == (e.status is Status.FAILED)
            assert not (mf.retry_pending(e, limit) and mf.failed_for_good(e, limit))


# --- JSON -------------------------------------------------------------------------------------


def test_manifest_json_round_trip() -> None:
    m = mf.reconcile(mixed(), [(6, "Ünïcode “title”")], {})
    m = replace(m, created_at=1795393200.25, updated_at=1795393260.75)
    text = json.dumps(m.to_json())
    back = Manifest.from_json(json.loads(text))
    assert back == m
    data = m.to_json()
    assert data["format"] == mf.FORMAT and data["nextToken"] == m.next_token
    assert set(data) == {"format", "book", "createdAt", "updatedAt", "nextToken", "chapters"}
    assert set(data["book"]) == {"path", "sha256", "title"}


def test_entry_json_matches_the_documented_example() -> None:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"```json\n(\{\n  \"number\".*?\})\n```", text, re.S)
    assert found, "the chapter entry example in manifest-format.md"
    example = json.loads(found.group(1))
    entry = Entry.from_json(example)
    assert entry.status is Status.IN_PROGRESS and entry.token == 9
    assert entry.to_json() == example
    # Every documented field, and no other.
    section = text.split("## Chapter entries")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert set(entry.to_json()) == documented


def test_changed_since_names_the_entries_with_entries_replaced() -> None:
    base = book(4)
    m, c = take(base)
    m, _ = mf.complete(m, c.number, c.token, 1.0, 5)
    m, c2 = take(m)
    assert [e.number for e in m.changed_since(base) or []] == [1, 2]
    assert m.changed_since(m) is None  # not made from itself
    # Anything but with_entries (a replace, a reconcile adding chapters): not known.
    assert replace(m, title="X").changed_since(base) is None
    grown = mf.reconcile(m, [(5, "C5")], {})
    assert grown.changed_since(base) is None
    # A new base: what is derived from it counts from there.
    m.rebase()
    later, _ = mf.heartbeat(m, c2.number, c2.token, 2.0)
    assert [e.number for e in later.changed_since(m) or []] == [2]
    assert later.changed_since(base) is None


def test_unknown_format_is_refused() -> None:
    data = book(1).to_json()
    data["format"] = mf.FORMAT + 1
    with pytest.raises(ValueError, match="format"):
        Manifest.from_json(data)


def test_from_json_accepts_what_the_format_allows() -> None:
    data = mixed().to_json()
    # Whole-second times are numbers too; nullable fields may be null or left out.
    data["createdAt"], data["updatedAt"] = 1795393200, 1795393260
    data["chapters"][3]["heartbeatAt"] = 1795393281
    data["chapters"][0]["error"] = None
    for key in ("owner", "claimedAt", "completedAt", "error", "retryable", "retryAt", "tokens"):
        data["chapters"][4].pop(key, None)
    back = Manifest.from_json(data)
    assert back.created_at == 1795393200.0 and isinstance(back.created_at, float)
    assert back.entry(4).heartbeat_at == 1795393281.0
    assert back.entry(5) == Entry(5, "C5")
    assert Manifest.from_json(back.to_json()) == back


def test_from_json_names_the_bad_field() -> None:
    # Each kind of bad field, through ManifestStore.read, is in tests/test_store.py.
    data = mixed().to_json()
    data["chapters"][3]["heartbeatAt"] = "x"
    with pytest.raises(ValueError, match=r"^chapters\[3\]: heartbeatAt: must be a finite number"):
        Manifest.from_json(data)
    with pytest.raises(ValueError, match=r"^status: must be one of pending, in_progress"):
        Entry.from_json({"number": 1, "title": "A", "status": "paused"})


# Values of every kind a damaged or hand-edited manifest may hold where an entry field goes,
# the edges each check is about first.
EDGES = [None, True, False, 0, -1, 1, 0.0, -1.5, 2**63, 2**1100, "", "pending", "paused", [], {}]
EDGES += [float("inf"), float("-inf"), float("nan")]
ANY_VALUE = st.one_of(
    st.sampled_from(EDGES),
    st.integers(),
    st.floats(),  # inf, -inf and nan among them
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
ENTRY_KEYS = list(Entry(1, "x").to_json())


@st.composite
def entry_like(draw: st.DrawFn) -> object:
    """A chapter entry as written, with some fields dropped, changed to another kind, or
    added; sometimes not an object at all."""
    if draw(st.integers(0, 20)) == 0:
        return draw(ANY_VALUE)
    base = mixed().entry(draw(st.integers(1, 5))).to_json()
    for key in draw(st.lists(st.sampled_from(ENTRY_KEYS), max_size=3, unique=True)):
        if draw(st.booleans()):
            del base[key]
        else:
            base[key] = draw(ANY_VALUE)
    if draw(st.integers(0, 5)) == 0:
        base[draw(st.text(max_size=4))] = draw(ANY_VALUE)
    return base


def test_an_entry_on_every_edge_of_every_field_parses_or_names_it() -> None:
    for number in range(1, 6):
        written = mixed().entry(number).to_json()
        for key in ENTRY_KEYS:
            without = {k: v for k, v in written.items() if k != key}
            check_entry_parse(without)
            for value in EDGES:
                check_entry_parse({**written, key: value})


@settings(max_examples=500, deadline=None)
@given(entry_like())
@pytest.mark.slow
def test_an_entry_parses_or_names_the_bad_field(data: object) -> None:
    check_entry_parse(data)


# The type each parsed field has (times as floats, whatever the JSON number was).
FIELD_TYPES = {
    "number": (int,),
    "title": (str,),
    "status": (mf.Status,),
    "owner": (str, type(None)),
    "claimed_at": (float, type(None)),
    "heartbeat_at": (float, type(None)),
    "attempts": (int,),
    "token": (int,),
    "completed_at": (float, type(None)),
    "error": (str, type(None)),
    "retryable": (bool,),
    "retry_at": (float, type(None)),
    "tokens": (int,),
    "spent_prompt": (int,),
    "spent_completion": (int,),
    "batch": (tuple, type(None)),  # --batch-api: the requests of a batched chapter
}


def check_entry_parse(data: object) -> None:
    """Either an entry whose every field has the format's type (no bool for a count, no
    infinite time, no negative count), or a ValueError; never another exception."""
    try:
        entry = Entry.from_json(data)
    except ValueError:
        return
    assert set(vars(entry)) == set(FIELD_TYPES) == {f.name for f in fields(Entry)}
    for name, kinds in FIELD_TYPES.items():
        value = getattr(entry, name)
        assert type(value) in kinds, (name, value)
        if type(value) is int:
            assert value >= 0, (name, value)
        if type(value) is float:
            assert math.isfinite(value), (name, value)


def test_an_entry_reads_back_as_imaginize_wrote_it() -> None:
    m = replace(mixed(), created_at=1795393200.25, updated_at=1795393260.75)
    m = mf.heartbeat(m, 4, m.entry(4).token, 1795393281.5)[0]
    for entry in m.chapters:
        assert Entry.from_json(json.loads(json.dumps(entry.to_json()))) == entry
    # Whole-second times (a hand edit) are read as the same float.
    data = m.entry(4).to_json()
    data["heartbeatAt"] = 1795393281
    assert Entry.from_json(data).heartbeat_at == 1795393281.0


# --- owners -----------------------------------------------------------------------------------


def test_owner_id_shape() -> None:
    assert mf.owner_id("w2", pid=41327, host="atlas") == "atlas:41327:w2"
    assert mf.owner_id("w1") == f"{socket.gethostname()}:{os.getpid()}:w1"


def test_owner_is_dead_only_when_provably_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid names nothing now (pid reuse within the test is negligible)
    here = socket.gethostname()
    assert mf.owner_is_dead(mf.owner_id("w1", pid=child.pid))
    assert not mf.owner_is_dead(mf.owner_id("w1"))  # ourselves
    # Another host can never be proven dead from here, whatever its pid.
    assert not mf.owner_is_dead(mf.owner_id("w1", pid=child.pid, host=f"not-{here}"))
    assert mf.owner_is_dead(f"elsewhere:{child.pid}:w1", this_host="elsewhere")
    for garbage in ("", "nonsense", f"{here}:abc:w1", f"{here}:-5:w1", f"{here}:0:w1"):
        assert not mf.owner_is_dead(garbage)


def test_owner_is_dead_for_a_killed_unreaped_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not mf.owner_is_dead(mf.owner_id("w1", pid=child.pid))
        os.kill(child.pid, signal.SIGKILL)
        # Not reaped yet: a zombie still answers kill(0) but no longer runs.
        deadline = time.monotonic() + 5
        while not mf.owner_is_dead(mf.owner_id("w1", pid=child.pid)):
            assert time.monotonic() < deadline, "a killed child never read as dead"
            time.sleep(0.01)
        assert child.poll() is not None  # and it was a zombie until now
    finally:
        child.kill()
        child.wait()


def test_owner_is_dead_fails_closed_on_an_impossible_pid() -> None:
    here = socket.gethostname()
    # A corrupt manifest must not crash a claim; a pid no process can have is not running.
    for pid in (2**31, 2**64, 10**30):
        assert mf.owner_is_dead(f"{here}:{pid}:w1")


def test_claim_with_real_liveness_reclaims_a_dead_workers_chapter() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    m, first = take(book(1), mf.owner_id("w1", pid=child.pid), now=0.0)
    m2, got = mf.claim(m, mf.owner_id("w2"), 1.0, lease=LEASE, max_attempts=MAX)
    assert got is not None and got.token > first.token
    # Our own live claim is not taken over by the default check.
    _, none = mf.claim(m2, mf.owner_id("w3"), 2.0, lease=LEASE, max_attempts=MAX)
    assert none is None


# --- the stateful model -----------------------------------------------------------------------

CHAPTERS = 3
SM_LEASE = 100.0
# Small, so that exhausted attempts and abandonment are reached within a run.
SM_MAX = 2


@dataclass
class ModelEntry:
    status: Status = Status.PENDING
    owner: str | None = None
    token: int = 0
    attempts: int = 0
    beat: float = 0.0
    retryable: bool = False
    retry_at: float | None = None


@dataclass
class Worker:
    owner: str
    alive: bool = True
    # Claims this worker believes it holds (number -> token); a reclaimed one stays here.
    held: dict[int, int] = field(default_factory=dict)


class ManifestMachine(RuleBasedStateMachine):
    """Workers claiming, beating, finishing, failing, releasing and crashing, with a clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.m = mf.new_manifest("/b", "h", "T", [(n, f"C{n}") for n in range(1, CHAPTERS + 1)], 0)
        self.model = {n: ModelEntry() for n in range(1, CHAPTERS + 1)}
        self.next_token = 1
        self.workers: list[Worker] = []
        self.dead: set[str] = set()
        self.tokens_issued: list[int] = []
        self.ever_completed: set[int] = set()
        self.all_claims: list[tuple[int, int]] = []

    def is_dead(self, owner: str) -> bool:
        return owner in self.dead

    # --- the model's own reading of manifest-format.md ---

    def model_stale(self, e: ModelEntry) -> bool:
        assert e.owner is not None
        return e.owner in self.dead or self.now - e.beat > SM_LEASE

    def model_claim(self, owner: str, wanted: set[int] | None) -> int | None:
        for n in range(1, CHAPTERS + 1):
            e = self.model[n]
            if wanted is not None and n not in wanted:
                continue
            if e.status is Status.PENDING:
                pass
            elif e.status is Status.FAILED:
                ready = e.retry_at is None or e.retry_at <= self.now
                if not (e.retryable and e.attempts < SM_MAX and ready):
                    continue
            elif e.status is Status.IN_PROGRESS and e.owner not in self.dead and e.beat > self.now:
                e.beat = self.now  # a heartbeat from a clock ahead counts, and is recorded, as now
                continue
            elif e.status is Status.IN_PROGRESS and self.model_stale(e):
                if e.attempts >= SM_MAX:
                    self.model[n] = replace(e, status=Status.FAILED, owner=None, retryable=False)
                    continue
            else:
                continue
            self.model[n] = ModelEntry(
                Status.IN_PROGRESS, owner, self.next_token, e.attempts + 1, self.now
            )
            self.next_token += 1
            return n
        return None

    def model_owned(self, n: int, token: int) -> bool:
        e = self.model[n]
        return e.status is Status.IN_PROGRESS and e.token == token

    # --- rules ---

    @rule()
    def spawn(self) -> None:
        if len(self.workers) < 6:
            i = len(self.workers)
            self.workers.append(Worker(mf.owner_id(f"w{i}", pid=1000 + i, host="box")))

    def live_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    @precondition(lambda self: any(w.alive for w in self.workers))
    @rule(data=st.data(), only=st.none() | st.sets(st.integers(1, CHAPTERS), max_size=2))
    def claim(self, data: st.DataObject, only: set[int] | None) -> None:
        self.take(data.draw(st.sampled_from(self.live_workers())), only)

    def take(self, w: Worker, only: set[int] | None) -> mf.Claim | None:
        """`claim` by `w`, checked against the model."""
        before = self.m
        expected = self.model_claim(w.owner, only)
        self.m, got = mf.claim(
            self.m,
            w.owner,
            self.now,
            lease=SM_LEASE,
            max_attempts=SM_MAX,
            is_dead=self.is_dead,
            wanted=only,
        )
        if expected is None:
            assert got is None
            assert self.m.next_token == before.next_token
            return None
        assert got is not None and got.number == expected
        assert all(got.token > t for t in self.tokens_issued)
        assert got.token == self.model[expected].token
        assert got.attempt <= SM_MAX
        self.tokens_issued.append(got.token)
        self.all_claims.append((got.number, got.token))
        w.held[got.number] = got.token
        return got

    def pick_held(self, data: st.DataObject) -> tuple[Worker, int, int]:
        w = data.draw(st.sampled_from([w for w in self.live_workers() if w.held]))
        n = data.draw(st.sampled_from(sorted(w.held)))
        return w, n, w.held[n]

    def any_held(self) -> bool:
        return any(w.alive and w.held for w in self.workers)

    def fenced(self, n: int, token: int, ok: bool, before: Manifest) -> bool:
        """Check the fencing rule; True when the call was allowed."""
        allowed = self.model_owned(n, token)
        assert ok == allowed
        if not allowed:
            assert self.m == before, "a worker whose token is not current changed the manifest"
        return allowed

    @precondition(any_held)
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        _w, n, token = self.pick_held(data)
        before = self.m
        self.m, ok = mf.heartbeat(self.m, n, token, self.now)
        if self.fenced(n, token, ok, before):
            self.model[n].beat = self.now

    @precondition(any_held)
    @rule(data=st.data(), ahead=st.sampled_from([1.0, SM_LEASE, 10 * SM_LEASE]))
    def heartbeat_ahead(self, data: st.DataObject, ahead: float) -> None:
        """A worker on a host whose clock runs `ahead` of the judges' beats."""
        _w, n, token = self.pick_held(data)
        before = self.m
        self.m, ok = mf.heartbeat(self.m, n, token, self.now + ahead)
        if self.fenced(n, token, ok, before):
            self.model[n].beat = self.now + ahead

    @precondition(any_held)
    @rule(data=st.data(), tokens=st.integers(0, 5000))
    def complete(self, data: st.DataObject, tokens: int) -> None:
        self.finish(*self.pick_held(data), tokens)

    def finish(self, w: Worker, n: int, token: int, tokens: int) -> bool:
        """`complete` of `w`'s claim on `n`, checked against the model."""
        before = self.m
        self.m, ok = mf.complete(self.m, n, token, self.now, tokens)
        del w.held[n]
        if self.fenced(n, token, ok, before):
            self.model[n] = replace(self.model[n], status=Status.COMPLETED, owner=None)
            self.ever_completed.add(n)
            assert self.m.entry(n).tokens == tokens
        return ok

    @precondition(any_held)
    @rule(
        data=st.data(),
        retryable=st.booleans(),
        backoff=st.none() | st.sampled_from([0.0, 5.0, 50.0, 500.0]),
    )
    def fail(self, data: st.DataObject, retryable: bool, backoff: float | None) -> None:
        w, n, token = self.pick_held(data)
        before = self.m
        retry_at = None if backoff is None else self.now + backoff
        self.m, ok = mf.fail(
            self.m, n, token, self.now, "err", retryable=retryable, retry_at=retry_at
        )
        del w.held[n]
        if self.fenced(n, token, ok, before):
            self.model[n] = replace(
                self.model[n],
                status=Status.FAILED,
                owner=None,
                retryable=retryable,
                retry_at=retry_at if retryable else None,
            )

    @precondition(any_held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        w, n, token = self.pick_held(data)
        before = self.m
        self.m, ok = mf.release(self.m, n, token)
        del w.held[n]
        if self.fenced(n, token, ok, before):
            e = self.model[n]
            self.model[n] = replace(e, status=Status.PENDING, owner=None, attempts=e.attempts - 1)

    @precondition(lambda self: bool(self.all_claims))
    @rule(data=st.data(), op=st.sampled_from(["heartbeat", "complete", "fail", "release"]))
    def ghost_acts(self, data: st.DataObject, op: str) -> None:
        """Any claim ever made, current or long superseded, tries to act."""
        n, token = data.draw(st.sampled_from(self.all_claims))
        if self.model_owned(n, token):
            return  # the rightful holder; covered by the other rules
        before = self.m
        if op == "heartbeat":
            self.m, ok = mf.heartbeat(self.m, n, token, self.now)
        elif op == "complete":
            self.m, ok = mf.complete(self.m, n, token, self.now, 1)
        elif op == "fail":
            self.m, ok = mf.fail(self.m, n, token, self.now, "ghost", retryable=True)
        else:
            self.m, ok = mf.release(self.m, n, token)
        assert not ok
        assert self.m == before

    @rule(dt=st.sampled_from([0.5, 10.0, SM_LEASE / 2, SM_LEASE, SM_LEASE + 1.0]))
    def advance_clock(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: any(w.alive for w in self.workers))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        w = data.draw(st.sampled_from(self.live_workers()))
        w.alive = False
        self.dead.add(w.owner)

    @precondition(lambda self: any(w.alive for w in self.workers))
    @rule(data=st.data(), n=st.integers(1, CHAPTERS))
    def reclaim(self, data: st.DataObject, n: int) -> None:
        """A live worker asks for one chapter: it gets it only if it is claimable."""
        w = data.draw(st.sampled_from(self.live_workers()))
        e = self.m.entry(n)
        stale = e.status is Status.IN_PROGRESS and self.model_stale(self.model[n])
        expected = self.model_claim(w.owner, {n})
        self.m, got = mf.claim(
            self.m,
            w.owner,
            self.now,
            lease=SM_LEASE,
            max_attempts=SM_MAX,
            is_dead=self.is_dead,
            wanted=[n],
        )
        assert (got.number if got else None) == expected
        if stale:
            if e.attempts < SM_MAX:
                assert got is not None and got.token > e.token
            else:
                assert got is None and self.m.entry(n).status is Status.FAILED
        if got is not None:
            self.tokens_issued.append(got.token)
            self.all_claims.append((got.number, got.token))
            w.held[got.number] = got.token

    # --- invariants ---

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.m.next_token == self.next_token
        for n, me in self.model.items():
            e = self.m.entry(n)
            assert (e.status, e.owner, e.token, e.attempts) == (
                me.status,
                me.owner,
                me.token,
                me.attempts,
            ), n
            if e.status is Status.IN_PROGRESS:
                assert e.heartbeat_at == me.beat
            if e.status is Status.FAILED:
                assert (e.retryable, e.retry_at) == (me.retryable, me.retry_at)

    @invariant()
    def indexes_agree_with_the_entries(self) -> None:
        """The indexes handed from manifest to manifest are the ones built afresh."""
        fresh = replace(self.m)  # the same entries, no index built yet
        assert self.m.open_positions() == fresh.open_positions()
        assert self.m.open_positions() == tuple(
            i
            for i, e in enumerate(self.m.chapters)
            if e.status is not Status.COMPLETED
            and not (e.status is Status.FAILED and not e.retryable)
        )
        for e in self.m.chapters:
            assert self.m.entry(e.number) is e and fresh.entry(e.number) is e
        assert mf.settled(self.m, SM_MAX) == mf.settled(fresh, SM_MAX)

    @invariant()
    def one_owner_and_only_in_progress(self) -> None:
        for e in self.m.chapters:
            assert (e.owner is not None) == (e.status is Status.IN_PROGRESS)
            holders = [w for w in self.workers if w.held.get(e.number) == e.token and e.token != 0]
            if e.status is Status.IN_PROGRESS:
                assert len(holders) <= 1
                assert all(w.owner == e.owner for w in holders)

    @invariant()
    def tokens_unique_and_increasing(self) -> None:
        assert len(set(self.tokens_issued)) == len(self.tokens_issued)
        assert self.tokens_issued == sorted(self.tokens_issued)
        assert all(e.token < self.m.next_token for e in self.m.chapters)

    @invariant()
    def completed_is_final(self) -> None:
        for n in self.ever_completed:
            assert self.m.entry(n).status is Status.COMPLETED

    @invariant()
    def attempts_bounded(self) -> None:
        for e in self.m.chapters:
            assert 0 <= e.attempts <= SM_MAX

    @invariant()
    def stale_claims_are_reclaimable_or_abandoned(self) -> None:
        for e in self.m.chapters:
            if e.status is not Status.IN_PROGRESS:
                continue
            stale = (e.owner in self.dead) or (self.now - (e.heartbeat_at or 0) > SM_LEASE)
            assert mf.beats_ahead(e, self.now) == ((e.heartbeat_at or 0) > self.now)
            assert bool(mf.is_stale(e, self.now, SM_LEASE, self.is_dead)) == stale
            if not stale:
                continue
            after, got = mf.claim(
                self.m,
                "probe:1:p",
                self.now,
                lease=SM_LEASE,
                max_attempts=SM_MAX,
                is_dead=self.is_dead,
                wanted=[e.number],
            )
            if e.attempts < SM_MAX:
                assert got is not None and got.number == e.number
                assert got.token == self.m.next_token
            else:
                assert got is None
                gone = after.entry(e.number)
                assert gone.status is Status.FAILED and not gone.retryable
                assert gone.owner is None


ManifestMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestManifestMachine = ManifestMachine.TestCase
TestManifestMachine.pytestmark = [pytest.mark.slow]


def test_failed_attempts_add_up_the_tokens_they_spent() -> None:
    m, c = take(book(2))
    m, ok = mf.fail(m, c.number, c.token, 1.0, "unusable", retryable=True, spent=(300, 60))
    assert ok
    m, c = take(m)
    m, _ = mf.fail(m, c.number, c.token, 2.0, "unusable", retryable=True, spent=(200, 40))
    entry = m.entry(c.number)
    assert (entry.spent_prompt, entry.spent_completion) == (500, 100)
    assert Entry.from_json(entry.to_json()) == entry
    # An entry of an older imaginize, without the fields, spent nothing known.
    older = {k: v for k, v in entry.to_json().items() if not k.startswith("spent")}
    assert Entry.from_json(older).spent_prompt == 0
