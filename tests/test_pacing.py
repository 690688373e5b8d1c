"""Shared pacing: the arithmetic with an injected clock, and the file across real processes."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imaginize.coordination.manifest import owner_is_dead
from imaginize.errors import LockTimeout
from imaginize.pacing.pace import (
    LINE_STALE,
    NEXT_POLL,
    Limits,
    Pacer,
    PaceState,
    Tier,
    finish,
    in_flight_limit,
    limit_in_flight,
    next_send_time,
    pause,
    reserve,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_tier_defaults() -> None:
    free = Limits.for_tier(Tier.FREE)
    assert (free.batch_size, free.batch_delay, free.max_in_flight) == (3, 60.0, 1)
    paid = Limits.for_tier(Tier.PAID)
    assert (paid.batch_size, paid.batch_delay, paid.max_in_flight) == (5, 2.0, 5)
    custom = Limits.for_tier(Tier.PAID, batch_size=2, batch_delay=0.5, rpm=30)
    assert (custom.batch_size, custom.batch_delay, custom.rpm) == (2, 0.5, 30)


def test_the_next_batch_waits_the_delay_after_the_last_send() -> None:
    limits = Limits(batch_size=3, batch_delay=60.0)
    state = PaceState()
    now = 1000.0
    for ticket in "abc":
        state, wait = reserve(state, limits, now, ticket)
        assert wait is None
    state, wait = reserve(state, limits, now + 1, "d")
    assert wait == pytest.approx(59.0)
    state, wait = reserve(state, limits, now + 60, "d")
    assert wait is None
    assert state.last_send == now + 60 and state.batch_sends == 1


def test_rpm_spaces_every_send() -> None:
    limits = Limits(batch_size=100, batch_delay=1.0, rpm=60)
    state, _ = reserve(PaceState(), limits, 10.0, "a")
    state, wait = reserve(state, limits, 10.2, "b")
    assert wait == pytest.approx(1.02 - 0.2)  # 60/rpm with the 2 % margin
    assert next_send_time(state, limits, 10.2) == pytest.approx(11.02)


def test_in_flight_cap_and_expiry() -> None:
    limits = Limits(batch_size=10, batch_delay=0.0, max_in_flight=1, in_flight_ttl=30.0)
    state, wait = reserve(PaceState(), limits, 0.0, "a")
    assert wait is None
    _, wait = reserve(state, limits, 1.0, "b")
    assert wait is not None  # "a" is still under way
    _, wait = reserve(finish(state, "a"), limits, 1.0, "b")
    assert wait is None
    _, wait = reserve(state, limits, 31.0, "b")  # "a"'s process died: its place expired
    assert wait is None


def test_a_pause_holds_everyone_and_only_grows() -> None:
    limits = Limits(batch_size=10, batch_delay=0.0)
    state = pause(PaceState(), 105.0, "429")
    assert reserve(state, limits, 100.0, "a")[1] == pytest.approx(5.0)
    assert pause(state, 101.0, "shorter") is state
    assert reserve(state, limits, 105.0, "a")[1] is None


def test_pacer_slots_with_an_injected_clock(tmp_path: Path) -> None:
    clock = Clock()
    pacer = Pacer(tmp_path, Limits(batch_size=2, batch_delay=10.0), clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(5):
        with pacer.slot():
            starts.append(clock.now - 1000.0)
    assert starts == [0.0, 0.0, 10.0, 10.0, 20.0]
    pacer.pause(7.0, "429 from server")
    with pacer.slot():
        assert clock.now - 1000.0 >= 27.0
    assert pacer.read().in_flight == {}


CHILD = """
import sys, time
from pathlib import Path
from imaginize.pacing.pace import Limits, Pacer
folder, count, log = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
barrier = folder / "go"
while not barrier.exists():
    time.sleep(0.005)
pacer = Pacer(folder, Limits(batch_size=1, batch_delay=0.0, rpm=float(sys.argv[4])))
for _ in range(count):
    with pacer.slot():
        with open(log, "a") as out:
            out.write(f"{time.time()}\\n")
"""


@pytest.mark.slow
def test_processes_share_one_rate(tmp_path: Path) -> None:
    """Three processes with rpm=600 together send one request per 0.1 s, not three."""
    log = tmp_path / "sends.log"
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "5", str(log), "600"])
        for _ in range(3)
    ]
    try:
        (tmp_path / "go").touch()
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            proc.kill()
    times = sorted(float(line) for line in log.read_text().split())
    assert len(times) == 15
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Each send is logged just after its slot is granted; a loaded machine may delay one log
    # line, so gaps get slack. Unshared pacing would show gaps near zero.
    assert min(gaps) >= 0.05
    assert times[-1] - times[0] >= 14 * 0.1 - 0.05


def test_a_learned_cap_is_the_stricter_of_the_two() -> None:
    limits = Limits(batch_size=10, batch_delay=0.0, max_in_flight=3)
    state, _ = reserve(PaceState(), limits, 0.0, "a")
    assert in_flight_limit(state, limits, 0.0) == 3
    state = limit_in_flight(state, 1, 0.0)
    assert in_flight_limit(state, limits, 0.0) == 1
    _, wait = reserve(state, limits, 1.0, "b")
    assert wait is not None  # "a" is under way and the server bears one
    assert in_flight_limit(state, Limits(batch_size=1, batch_delay=0.0), 1.0) == 1


def test_the_request_refused_for_room_goes_next() -> None:
    # One at a time, the worker whose request just ended must not take the place again ahead
    # of the one waiting for it: else that one's chapter waits out its timeout.
    limits = Limits(batch_size=100, batch_delay=0.0, max_in_flight=1)
    state, _ = reserve(PaceState(), limits, 0.0, "a")
    state, wait = reserve(state, limits, 0.1, "b")
    assert wait == NEXT_POLL  # "a" is under way: "b" is next in line, and asks again soon
    _, wait = reserve(state, limits, 0.1, "c")
    assert wait == 0.25  # behind "b"
    state = finish(state, "a")
    state, wait = reserve(state, limits, 0.2, "a2")
    assert wait is not None  # the place is free, but "b" asked first
    state, wait = reserve(state, limits, 0.3, "b")
    assert wait is None
    state = finish(state, "b")
    _, wait = reserve(state, limits, 0.4, "a2")
    assert wait is None  # nobody in line


def test_a_line_nobody_is_waiting_in_any_more_holds_nobody() -> None:
    limits = Limits(batch_size=100, batch_delay=0.0, max_in_flight=1)
    state, _ = reserve(PaceState(), limits, 0.0, "a")
    state, _ = reserve(state, limits, 0.1, "b")  # "b" then gave its work up
    state = finish(state, "a")
    _, wait = reserve(state, limits, 0.1 + LINE_STALE + 0.01, "c")
    assert wait is None


def test_a_pace_file_from_before_the_learned_cap_loads(tmp_path: Path) -> None:
    pacer = Pacer(tmp_path, Limits(batch_size=5, batch_delay=0.0, max_in_flight=2))
    old = {"batchSends": 1, "lastSend": 5.0, "pausedUntil": 0.0, "pauseReason": "",
           "inFlight": {}, "sends": 7, "tokenTat": 0.0}  # fmt: skip
    pacer.path.write_text(json.dumps(old))
    assert (pacer.read().sends, pacer.read().in_flight_cap) == (7, 0)
    assert pacer.cap_in_flight(1)
    assert json.loads(pacer.path.read_text())["inFlightCap"] == 1
    assert pacer.read().sends == 7


def test_a_corrupt_pace_file_is_started_over(tmp_path: Path) -> None:
    pacer = Pacer(tmp_path, Limits(batch_size=1, batch_delay=0.0))
    pacer.path.write_text("{not json")
    with pacer.slot():
        pass
    assert pacer.read().sends == 1


def test_a_place_held_by_a_dead_process_is_freed_at_once(tmp_path: Path) -> None:
    """A worker killed mid-request must not hold the free tier's only place for ten minutes."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    limits = Limits(batch_size=10, batch_delay=0.0, max_in_flight=1, in_flight_ttl=600.0)
    stale = PaceState(in_flight={f"{host}:{dead.pid}:abc123": 2000.0})
    assert reserve(stale, limits, 1000.0, "b")[1] is not None  # by age alone: still held
    state, wait = reserve(stale, limits, 1000.0, "b", owner_is_dead)
    assert wait is None and list(state.in_flight) == ["b"]
    alive = PaceState(in_flight={f"{host}:{os.getpid()}:abc123": 2000.0})
    assert reserve(alive, limits, 1000.0, "b", owner_is_dead)[1] is not None
    pacer = Pacer(tmp_path, limits)
    pacer.path.write_text(json.dumps(stale.to_json()))
    with pacer.slot():
        pass


HOLD_PACE_LOCK = """
import sys, time
from pathlib import Path
from imaginize.pacing.pace import Limits, Pacer
pacer = Pacer(Path(sys.argv[1]), Limits(batch_size=1, batch_delay=0.0))
pacer._lock.acquire()
(Path(sys.argv[1]) / "held").touch()
time.sleep(60)
"""


@pytest.mark.slow
def test_the_pace_lock_of_a_killed_holder_is_free_at_once(tmp_path: Path) -> None:
    """The pace lock is a kernel lock: a worker killed inside a pace transaction (kill -9,
    nothing cleaned up) leaves no lock behind for the others to wait out or break."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_PACE_LOCK, str(tmp_path)])
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "held").exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        pacer = Pacer(tmp_path, Limits(batch_size=1, batch_delay=0.0), lock_timeout=0.3)
        with pytest.raises(LockTimeout, match="held by another running process"):
            pacer.pause(1.0, "while held")
        holder.kill()
        holder.wait()
        started = time.monotonic()
        pacer.pause(1.0, "after the kill")
        assert time.monotonic() - started < 0.3
        assert pacer.read().pause_reason == "after the kill"
    finally:
        holder.kill()
        holder.wait()


def test_threads_of_one_process_take_the_pace_lock_in_turn(tmp_path: Path) -> None:
    """An analysis thread abandoned at its deadline may still be giving its slot back while
    the next chapter's thread asks for one, through the same Pacer."""
    pacer = Pacer(tmp_path, Limits(batch_size=1000, batch_delay=0.0))
    inside = threading.Event()
    let_go = threading.Event()
    order: list[str] = []

    def hold(state: PaceState) -> tuple[PaceState, None]:
        inside.set()
        let_go.wait(10)
        order.append("first out")
        return state, None

    first = threading.Thread(target=pacer._update, args=(hold,))
    first.start()
    assert inside.wait(10)

    def second() -> None:
        pacer._update(lambda s: (order.append("second in"), (s, None))[1])

    other = threading.Thread(target=second)
    other.start()
    time.sleep(0.2)
    assert order == []  # the second thread waits for the first to leave
    let_go.set()
    first.join(10)
    other.join(10)
    assert order == ["first out", "second in"]
