"""Request pacing shared by every process that uses one API key.

The pace is kept in a small JSON file (`.imaginize.rate.json`) in a folder of its own for each
API key and server (`pace_dir`: under the user's cache folder), changed only under its own lock
(a kernel lock on `.imaginize.pace.lock`, see `locking.py`), so N processes in M terminals, on
one book or many, together send no faster than one limit allows. Before each request a worker
reserves the next free send time ("slot") and sleeps outside the lock until then; a 429 writes a
pause that every worker honours, and that outlives the run. A pause longer than `max_wait`
(`--max-wait`) is not waited out: `ServerPaused` stops the run instead, naming the server and
the time it asked for.

Limits, whichever is strictest:
- batches: up to `batch_size` sends form a batch; the next batch starts no sooner than
  `batch_delay` seconds after the last send of the one before ("60 s between batches"), which
  also leaves a margin for the time a request takes to reach the server;
- `rpm`: consecutive sends are at least 60/rpm seconds apart;
- `max_in_flight`: requests under way at once across all processes (free tier: 1, i.e. the
  requests of a batch go one after another). An in-flight entry expires after `in_flight_ttl`
  so a killed process cannot hold its place for ever;
- a learned cap (`cap_in_flight`, the record's `inFlightCap`): a server found to cut a reply
  short when another request arrives (llama-cpp-python's `interrupt_requests`) gets one
  request at a time from every process on the key, the interrupting one too. It lapses once
  the key has gone `LEARNED_CAP_IDLE` without a send (the server may since have been
  restarted differently, or replaced);
- a line of one: the first request refused for want of room (`nextInLine`) takes the next
  free place, not whoever asks first once it is free (the process whose request just ended
  would, every time). It holds only while it keeps asking (`LINE_STALE`), and only one: those
  behind it race for the place after;
- `tpm`: tokens per minute. A request reserves its prompt and its output cap before it goes
  (`slot(tokens=N)`), and the reply's reported usage gives the rest back (`settle`). The
  budget is a GCRA with no burst: each reservation moves a theoretical arrival time on by
  tokens * 60/tpm, the next request goes once that time is reached, and a refund moves it back.
  The `rpm` spacing is the same algorithm with one unit per request. One number per budget
  (no log of past sends), and a refund is a subtraction.

Two backends behind one interface (`SharedPace`): this file pace (`Pacer`) for one machine,
and Redis (`redis_pace.RedisPacer`, `--redis`) for processes on many; `open_pacer` in
`imaginize.pacing` chooses.

What is not guaranteed: a process whose clock is far off from the others' (pacing uses each
process's wall clock against times written by the others; one machine shares one clock).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imaginize import cancel
from imaginize.coordination.atomic import write_json_atomic
from imaginize.coordination.locking import acquire, pace_lock
from imaginize.coordination.manifest import owner_id, owner_is_dead
from imaginize.errors import ServerPaused
from imaginize.settings import DEFAULT_MAX_WAIT

RATE_NAME = ".imaginize.rate.json"
# Not the `.imaginize.rate.lock` of earlier versions, which was a SoftFileLock marker: an
# older imaginize would take the kernel lock's file, left in place, for a held marker.
PACE_LOCK_NAME = ".imaginize.pace.lock"


def pace_dir(base_url: str | None, api_key: str, env: dict[str, str] | None = None) -> Path:
    """The folder of the shared pace for one key on one server. The key itself is not stored,
    only a digest of it."""
    env = dict(os.environ) if env is None else env
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "imaginize" / "pace" / pace_digest(base_url, api_key)


def server_name(base_url: str | None) -> str:
    """The server as users know it from its base URL: host, and port when one is given."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def clock_time(when: float, now: float) -> str:
    """`when` as local time of day, with the date when it is not today."""
    moment = datetime.datetime.fromtimestamp(when)
    if moment.date() == datetime.datetime.fromtimestamp(now).date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class Tier(StrEnum):
    FREE = "free"
    PAID = "paid"


@dataclass(frozen=True)
class Limits:
    batch_size: int
    batch_delay: float
    rpm: float | None = None
    max_in_flight: int | None = None
    in_flight_ttl: float = 600.0
    tpm: float | None = None

    @classmethod
    def for_tier(
        cls,
        tier: Tier,
        *,
        batch_size: int | None = None,
        batch_delay: float | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
    ) -> Limits:
        if tier is Tier.FREE:
            size = batch_size or 3
            delay = 60.0 if batch_delay is None else batch_delay
            return cls(size, delay, rpm, max_in_flight=1, tpm=tpm)
        size = batch_size or 5
        delay = 2.0 if batch_delay is None else batch_delay
        return cls(size, delay, rpm, max_in_flight=size, tpm=tpm)

    def tightened(self, rpm: float | None = None, tpm: float | None = None) -> Limits:
        """These limits, held to a server's own (`x-ratelimit-limit-*`) where that is
        stricter; never looser than the user's."""
        return replace(self, rpm=_stricter(self.rpm, rpm), tpm=_stricter(self.tpm, tpm))


def _stricter(mine: float | None, theirs: float | None) -> float | None:
    if theirs is None or theirs <= 0:
        return mine
    return theirs if mine is None else min(mine, theirs)


@dataclass(frozen=True)
class PaceState:
    """The shared record. Times are Unix seconds."""

    batch_sends: int = 0
    last_send: float = 0.0
    paused_until: float = 0.0
    pause_reason: str = ""
    in_flight: dict[str, float] = field(default_factory=dict)
    sends: int = 0
    # When the server stopped answering connections (0: it answers), and how many tries
    # failed since: the backoff grows with them, and --max-wait counts from the first.
    unreachable_since: float = 0.0
    unreachable_tries: int = 0
    # The token budget's theoretical arrival time (see `tpm` above); 0: none reserved.
    token_tat: float = 0.0
    # Requests at once the server was found to bear (see `learned_cap`); 0: none learned.
    in_flight_cap: int = 0
    # The ticket first refused for want of room, and when it last asked: it goes next.
    next_in_line: str = ""
    next_seen: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "batchSends": self.batch_sends,
            "lastSend": self.last_send,
            "pausedUntil": self.paused_until,
            "pauseReason": self.pause_reason,
            "inFlight": self.in_flight,
            "sends": self.sends,
            "unreachableSince": self.unreachable_since,
            "unreachableTries": self.unreachable_tries,
            "tokenTat": self.token_tat,
            "inFlightCap": self.in_flight_cap,
            "nextInLine": self.next_in_line,
            "nextSeen": self.next_seen,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PaceState:
        return cls(
            batch_sends=int(data.get("batchSends", 0)),
            last_send=float(data.get("lastSend", 0.0)),
            paused_until=float(data.get("pausedUntil", 0.0)),
            pause_reason=str(data.get("pauseReason", "")),
            in_flight={str(k): float(v) for k, v in dict(data.get("inFlight", {})).items()},
            sends=int(data.get("sends", 0)),
            unreachable_since=float(data.get("unreachableSince", 0.0)),
            unreachable_tries=int(data.get("unreachableTries", 0)),
            token_tat=float(data.get("tokenTat", 0.0)),
            in_flight_cap=int(data.get("inFlightCap", 0)),
            next_in_line=str(data.get("nextInLine", "")),
            next_seen=float(data.get("nextSeen", 0.0)),
        )


# Sends are spaced a little wider than the limit: the server counts arrivals, and a request can
# reach it later after its slot than the one before it did (connection set-up, a busy core).
RPM_MARGIN = 0.02
# How often a request waiting for the token budget looks again (refunds move it back).
TOKEN_POLL = 0.05
# Longest wait between two tries of a server that does not answer connections.
UNREACHABLE_BACKOFF_CAP = 30.0
# A learned in-flight cap lapses once the key has gone this long without a send.
LEARNED_CAP_IDLE = 3600.0
# The request next in line loses its turn once it has not asked for this long (a waiter
# refused for room asks again within 0.25 s; one given up on stops asking).
LINE_STALE = 1.0
# How soon a request kept back for the one next in line asks again.
LINE_POLL = 0.05
# How soon the one next in line asks again while there is no room (the others: 0.25 s), so
# that a place freed is not left empty for long.
NEXT_POLL = 0.1


def rpm_interval(rpm: float) -> float:
    return 60.0 / rpm * (1 + RPM_MARGIN)


def token_interval(tpm: float) -> float:
    """Seconds of the token budget one token takes, with the same margin as requests."""
    return 60.0 / tpm * (1 + RPM_MARGIN)


def next_send_time(state: PaceState, limits: Limits, now: float) -> float:
    """The earliest time the next request may start, ignoring the in-flight cap. A batch that
    has gone quiet for `batch_delay` is over, whether or not it filled."""
    earliest = max(now, state.paused_until)
    if limits.rpm:
        earliest = max(earliest, state.last_send + rpm_interval(limits.rpm))
    if state.batch_sends >= limits.batch_size:
        earliest = max(earliest, state.last_send + limits.batch_delay)
    if limits.tpm:
        earliest = max(earliest, state.token_tat)
    return earliest


def learned_cap(state: PaceState, now: float) -> int | None:
    """The in-flight cap learned from the server, while it holds (None: none)."""
    if state.in_flight_cap > 0 and now < state.last_send + LEARNED_CAP_IDLE:
        return state.in_flight_cap
    return None


def in_flight_limit(state: PaceState, limits: Limits, now: float) -> int | None:
    """Requests under way at once allowed now: the stricter of the user's and the learned."""
    caps = [cap for cap in (limits.max_in_flight, learned_cap(state, now)) if cap is not None]
    return min(caps, default=None)


def limit_in_flight(state: PaceState, cap: int, now: float) -> PaceState:
    """`state` holding everyone to at most `cap` requests at once; a learned cap only ever
    comes down while it holds."""
    held = learned_cap(state, now)
    if held is not None and held <= cap:
        return state
    return replace(state, in_flight_cap=max(1, cap))


def reserve(
    state: PaceState,
    limits: Limits,
    now: float,
    ticket: str,
    is_dead: Callable[[str], bool] = lambda ticket: False,
    tokens: int = 0,
) -> tuple[PaceState, float | None]:
    """Try to take a send slot for `ticket` (and `tokens` of the token budget). Returns the new
    state and None when the request may go at once, or the state (changed only to put `ticket`
    next in line) and how long to wait before asking again.

    A request under way holds its place until it finishes, its process is seen dead
    (`is_dead(ticket)`; tickets are `host:pid:random`), or `in_flight_ttl` passes."""
    live = {k: v for k, v in state.in_flight.items() if v > now and not is_dead(k)}
    cap = in_flight_limit(state, limits, now)
    ahead = state.next_in_line if now - state.next_seen < LINE_STALE else ""
    if cap is not None and len(live) >= cap:
        soonest = min(live.values()) - now
        if ahead in ("", ticket):
            # The first kept waiting for room goes next, and asks more often.
            return replace(state, next_in_line=ticket, next_seen=now), max(
                0.0, min(soonest, NEXT_POLL)
            )
        return state, max(0.0, min(soonest, 0.25))
    if ahead not in ("", ticket):
        return state, LINE_POLL
    when = next_send_time(state, limits, now)
    if when > now:
        return state, when - now
    if state.batch_sends >= limits.batch_size or now >= state.last_send + limits.batch_delay:
        batch_sends = 1
    else:
        batch_sends = state.batch_sends + 1
    live[ticket] = now + limits.in_flight_ttl
    token_tat = state.token_tat
    if limits.tpm:
        token_tat = max(token_tat, now) + max(0, tokens) * token_interval(limits.tpm)
    return (
        replace(
            state,
            batch_sends=batch_sends,
            last_send=now,
            in_flight=live,
            sends=state.sends + 1,
            token_tat=token_tat,
            # A lapsed cap is forgotten, or this send would bring it back.
            in_flight_cap=learned_cap(state, now) or 0,
            next_in_line="",
            next_seen=0.0,
        ),
        None,
    )


def refund(state: PaceState, limits: Limits, tokens: int) -> PaceState:
    """Give back `tokens` reserved but not used."""
    if not limits.tpm or tokens <= 0:
        return state
    return replace(state, token_tat=max(0.0, state.token_tat - tokens * token_interval(limits.tpm)))


def finish(state: PaceState, ticket: str) -> PaceState:
    if ticket not in state.in_flight:
        return state
    return replace(state, in_flight={k: v for k, v in state.in_flight.items() if k != ticket})


def pause(state: PaceState, until: float, reason: str) -> PaceState:
    if until <= state.paused_until:
        return state
    return replace(state, paused_until=until, pause_reason=reason)


class Reservation:
    """A slot's share of the token budget: `settle(used)` gives back what the reply did not
    use. Not settled (no usage reported, an error), the whole reservation stays spent."""

    def __init__(self, tokens: int, give_back: Callable[[int], None]) -> None:
        self.tokens = tokens
        self._give_back = give_back
        self.settled = False

    def settle(self, used: int | None) -> None:
        if self.settled or used is None:
            return
        self.settled = True
        unused = self.tokens - max(0, used)
        if unused > 0:
            self._give_back(unused)


class SharedPace(ABC):
    """The interface every pace backend offers its users (the analyzer, the image maker, the
    launcher): slots, pauses, reachability. `max_wait`: the longest pause of `server` (named
    in messages) that is waited out."""

    limits: Limits
    max_wait: float
    server: str
    _clock: Callable[[], float]
    _sleep: Callable[[float], None]

    @contextmanager
    def slot(self, tokens: int = 0) -> Iterator[Reservation]:
        """Wait for a send slot (and `tokens` of the token budget), hold it while the request
        runs, give it back after (or at once when the work it is for is given up on, see
        `cancel`). Raises `ServerPaused` rather than wait out a pause longer than `max_wait`."""
        ticket = owner_id(secrets.token_hex(6))
        tokens = max(0, int(tokens)) if self.limits.tpm else 0
        while True:
            cancel.check()  # an abandoned analysis must not queue for a slot
            wait, paused_until = self._attempt(ticket, tokens)
            if wait is None:
                break
            self.check_pause(paused_until)
            if self.limits.tpm:
                # A reply's refund can bring the token budget's time much nearer: look again.
                wait = min(wait, TOKEN_POLL)
            self._sleep(max(wait, 0.001))
        try:
            with cancel.guarded(lambda: self._give_back(ticket)):
                yield Reservation(tokens, self._refund)
        finally:
            self._give_back(ticket)

    def tighten(self, rpm: float | None = None, tpm: float | None = None) -> None:
        """Hold this process to a server's stated limits where they are stricter."""
        self.limits = self.limits.tightened(rpm, tpm)

    @abstractmethod
    def read(self) -> PaceState:
        """The shared record, its times on this process's clock."""

    @abstractmethod
    def _attempt(self, ticket: str, tokens: int) -> tuple[float | None, float]:
        """Reserve a slot: (None, pause end) when taken, else (seconds to wait, pause end)."""

    @abstractmethod
    def _give_back(self, ticket: str) -> None: ...

    @abstractmethod
    def _refund(self, tokens: int) -> None: ...

    @abstractmethod
    def pause(self, seconds: float, reason: str) -> float:
        """Everyone waits `seconds` from now (a 429's Retry-After, or a backoff). Returns when
        the pause now in force ends (a longer one already written stands)."""

    @abstractmethod
    def unreachable(self, reason: str) -> float:
        """A request found the server unreachable: everyone waits a backoff that grows with
        the failed tries (1, 2, 4 ... 30 s), then tries again. Raises `ServerPaused` once it
        has been unreachable for longer than `max_wait`; returns the pause's end otherwise."""

    @abstractmethod
    def reachable(self) -> None:
        """A request got an answer: the server is back, and nobody waits for it any more."""

    @abstractmethod
    def cap_in_flight(self, cap: int) -> bool:
        """From now on every process on the key sends at most `cap` requests at once (a
        server that cuts a reply short when another arrives: 1). True when this call lowered
        the cap, so that one process, not each, says so."""

    def _unreachable_verdict(self, since: float, now: float, reason: str) -> None:
        if now - since > self.max_wait:
            when = clock_time(since, now)
            raise ServerPaused(
                f"{self.server} has been unreachable since {when} ({now - since:.0f}s, longer "
                f"than --max-wait {self.max_wait:g}s; last: {reason}): stopped, no chapter "
                "failed; re-run when it is back"
            )

    def check_pause(self, until: float, asked: str = "") -> float:
        """Seconds left of a pause ending at `until`; `ServerPaused` when that is longer than
        `max_wait`. `asked`: whom the server asked, for the message."""
        now = self._clock()
        left = until - now
        if left > self.max_wait:
            when = clock_time(until, now)
            raise ServerPaused(
                f"{self.server} asked{asked} to wait until {when} ({left:.0f}s from now), longer "
                f"than --max-wait {self.max_wait:g}s: stopped, no chapter failed; re-run after "
                f"{when}"
            )
        return max(0.0, left)

    def pause_left(self, asked: str = "") -> float:
        """Seconds left of the pause in force (0 when none), as `check_pause`."""
        return self.check_pause(self.read().paused_until, asked)


def unreachable_wait(tries: int, left: float) -> float:
    """The backoff after `tries` failed tries; the last wait ends just past --max-wait (`left`
    from now): one more try, then the verdict."""
    return min(UNREACHABLE_BACKOFF_CAP, 2.0 ** (tries - 1), max(0.5, left + 0.5))


class Pacer(SharedPace):
    """The shared pace on disk, for the processes of one machine."""

    def __init__(
        self,
        folder: Path,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lock_timeout: float = 120.0,
        max_wait: float = DEFAULT_MAX_WAIT,
        server: str = "the server",
    ) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.path = Path(folder) / RATE_NAME
        self.limits = limits
        self.max_wait = max_wait
        self.server = server
        self._clock = clock
        self._sleep = sleep
        self._lock = pace_lock(Path(folder) / PACE_LOCK_NAME)
        self._lock_timeout = lock_timeout

    def read(self) -> PaceState:
        try:
            return PaceState.from_json(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return PaceState()
        except (OSError, ValueError, TypeError):
            # A pace file is advice, not a record of work: start over rather than stop.
            return PaceState()

    def _update(self, change: Callable[[PaceState], tuple[PaceState, Any]]) -> Any:
        acquire(self._lock, self._lock_timeout)
        try:
            current = self.read()
            updated, outcome = change(current)
            if updated != current:
                # Advisory: a pace lost in a power cut costs one early request at worst.
                write_json_atomic(self.path, updated.to_json(), indent=None, durable=False)
        finally:
            self._lock.release()
        return outcome

    def _attempt(self, ticket: str, tokens: int) -> tuple[float | None, float]:
        def attempt(state: PaceState) -> tuple[PaceState, tuple[float | None, float]]:
            updated, wait = reserve(
                state, self.limits, self._clock(), ticket, owner_is_dead, tokens
            )
            return updated, (wait, state.paused_until)

        return self._update(attempt)

    def _give_back(self, ticket: str) -> None:
        self._update(lambda s: (finish(s, ticket), None))

    def _refund(self, tokens: int) -> None:
        self._update(lambda s: (refund(s, self.limits, tokens), None))

    def pause(self, seconds: float, reason: str) -> float:
        until = self._clock() + max(0.0, seconds)

        def change(state: PaceState) -> tuple[PaceState, float]:
            updated = pause(state, until, reason)
            return updated, updated.paused_until

        return self._update(change)

    def unreachable(self, reason: str) -> float:
        now = self._clock()

        def change(state: PaceState) -> tuple[PaceState, tuple[float, float]]:
            since = state.unreachable_since or now
            tries = state.unreachable_tries + 1
            wait = unreachable_wait(tries, self.max_wait - (now - since))
            updated = pause(
                replace(state, unreachable_since=since, unreachable_tries=tries),
                now + wait,
                reason,
            )
            return updated, (since, updated.paused_until)

        since, until = self._update(change)
        self._unreachable_verdict(since, now, reason)
        return until

    def reachable(self) -> None:
        if not self.read().unreachable_since:
            return  # the common case: one read, no lock

        def change(state: PaceState) -> tuple[PaceState, None]:
            if not state.unreachable_since:
                return state, None
            now = self._clock()
            return replace(
                state,
                unreachable_since=0.0,
                unreachable_tries=0,
                paused_until=min(state.paused_until, now),
            ), None

        self._update(change)

    def cap_in_flight(self, cap: int) -> bool:
        def change(state: PaceState) -> tuple[PaceState, bool]:
            updated = limit_in_flight(state, cap, self._clock())
            return updated, updated != state

        return self._update(change)


def pace_digest(base_url: str | None, api_key: str) -> str:
    """What names one key's pace on one server (a folder, Redis keys): a digest, never the
    key itself."""
    return hashlib.sha256(f"{base_url or 'openai'}\0{api_key}".encode()).hexdigest()[:16]


def aggregate_rate(limits: Limits) -> float:
    """Requests per minute the limits allow at most, for estimates and messages."""
    per_minute = limits.batch_size * 60.0 / limits.batch_delay if limits.batch_delay else math.inf
    return min(per_minute, limits.rpm or math.inf)
