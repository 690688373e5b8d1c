"""The shared pace in Redis (`--redis URL`): every process on every host that uses one API key
on one server and the same Redis shares one budget.

The same limits and the same algorithms as the file pace (`pacing`): batches, the rpm and tpm
GCRA (no burst), the in-flight cap and the one learned from the server (`in_flight_cap`,
lapsing once the key goes `LEARNED_CAP_IDLE` without a send), the line of one (`next_in_line`),
a pause on 429 honoured by all,
the unreachable-server backoff. Each change is one Lua script, which Redis runs atomically, so
a reservation is one round trip and no lock is held between hosts. Times are Redis's own clock
(`TIME`), so hosts whose clocks differ still share one pace; times shown to users are turned
to the local clock.

Keys: `imaginize:pace:<digest>:state` (a hash) and `...:flight` (a sorted set of tickets,
scored by when each expires), where the digest is `pacing.pace_digest` of the base URL and the
key, never the key. A ticket is freed when its request ends, when its process is seen dead on
this host, or when `in_flight_ttl` passes (a process killed on another host). The keys expire
a day after their last use (longer while a pause lasts).

A Redis that goes away mid-run holds requests (one line when it goes, one when it is back);
it does not fail them. Giving a slot back or a refund is tried once: a lost one expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from imaginize import cancel
from imaginize.coordination.manifest import owner_is_dead
from imaginize.errors import ConfigError
from imaginize.pacing.pace import (
    DEFAULT_MAX_WAIT,
    LEARNED_CAP_IDLE,
    LINE_POLL,
    LINE_STALE,
    NEXT_POLL,
    UNREACHABLE_BACKOFF_CAP,
    Limits,
    PaceState,
    SharedPace,
    rpm_interval,
    token_interval,
)
from imaginize.safetext import without_password

try:
    import redis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError:  # the optional extra is not installed
    redis = None  # type: ignore[assignment]

T = TypeVar("T")
# How long a pace outlives its last use.
KEEP_SECONDS = 86400
# Longest wait between two tries of a Redis that is away.
REDIS_BACKOFF_CAP = 5.0

# Every script takes ARGV[1] = now (empty: Redis's clock) and returns `now` last, so that the
# caller can turn Redis times into its own.
_NOW = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function f(x) return string.format('%.6f', x) end
local function num(v) return tonumber(v) or 0 end
"""

_RESERVE = (
    _NOW
    + """
local ticket = ARGV[2]
local batch_size, batch_delay = tonumber(ARGV[3]), tonumber(ARGV[4])
local interval, cap, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local tokens, per_token, keep = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local cap_idle, line_stale, line_poll = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local next_poll = tonumber(ARGV[14])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', f(now))
local s = redis.call('HMGET', KEYS[1], 'batch_sends', 'last_send', 'paused_until', 'token_tat',
                     'sends', 'in_flight_cap', 'next_in_line', 'next_seen')
local batch_sends, last_send, paused_until = num(s[1]), num(s[2]), num(s[3])
local token_tat, sends, learned = num(s[4]), num(s[5]), num(s[6])
if learned > 0 and now >= last_send + cap_idle then
  learned = 0  -- lapsed; forgotten below, or this send would bring it back
end
if learned > 0 and (cap < 0 or learned < cap) then cap = learned end
local ahead = ''
if s[7] and now - num(s[8]) < line_stale then ahead = s[7] end
if cap >= 0 then
  local live = redis.call('ZCARD', KEYS[2])
  if live >= cap then
    local poll = 0.25
    if ahead == '' or ahead == ticket then
      redis.call('HSET', KEYS[1], 'next_in_line', ticket, 'next_seen', f(now))
      poll = next_poll
    end
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    local soonest = math.max(0, math.min(tonumber(first[2]) - now, poll))
    return {'full', f(soonest), f(paused_until), f(now)}
  end
end
if ahead ~= '' and ahead ~= ticket then
  return {'wait', f(line_poll), f(paused_until), f(now)}
end
local earliest = math.max(now, paused_until)
if interval > 0 then earliest = math.max(earliest, last_send + interval) end
if batch_sends >= batch_size then earliest = math.max(earliest, last_send + batch_delay) end
if per_token > 0 then earliest = math.max(earliest, token_tat) end
if earliest > now then
  return {'wait', f(earliest - now), f(paused_until), f(now)}
end
if batch_sends >= batch_size or now >= last_send + batch_delay then
  batch_sends = 1
else
  batch_sends = batch_sends + 1
end
if per_token > 0 then token_tat = math.max(token_tat, now) + tokens * per_token end
redis.call('HSET', KEYS[1], 'batch_sends', batch_sends, 'last_send', f(now),
           'sends', sends + 1, 'token_tat', f(token_tat), 'in_flight_cap', learned,
           'next_in_line', '', 'next_seen', '0')
redis.call('ZADD', KEYS[2], f(now + ttl), ticket)
local until_ = math.max(paused_until, token_tat, now) - now
redis.call('EXPIRE', KEYS[1], math.ceil(until_ + keep))
redis.call('EXPIRE', KEYS[2], math.ceil(ttl + keep))
return {'go', '0', f(paused_until), f(now)}
"""
)

_REFUND = (
    _NOW
    + """
local t = num(redis.call('HGET', KEYS[1], 'token_tat'))
t = math.max(0, t - tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'token_tat', f(t))
return {f(now)}
"""
)

_PAUSE = (
    _NOW
    + """
local until_ = now + tonumber(ARGV[2])
local current = num(redis.call('HGET', KEYS[1], 'paused_until'))
if until_ > current then
  redis.call('HSET', KEYS[1], 'paused_until', f(until_), 'pause_reason', ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(until_ - now + tonumber(ARGV[4])))
  current = until_
end
return {f(current), f(now)}
"""
)

_UNREACHABLE = (
    _NOW
    + """
local max_wait, backoff_cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'unreachable_since', 'unreachable_tries', 'paused_until')
local since = num(s[1])
if since == 0 then since = now end
local tries = num(s[2]) + 1
local left = max_wait - (now - since)
local wait = math.min(backoff_cap, 2 ^ (tries - 1), math.max(0.5, left + 0.5))
local paused_until = num(s[3])
if now + wait > paused_until then
  paused_until = now + wait
  redis.call('HSET', KEYS[1], 'paused_until', f(paused_until), 'pause_reason', ARGV[4])
end
redis.call('HSET', KEYS[1], 'unreachable_since', f(since), 'unreachable_tries', tries)
redis.call('EXPIRE', KEYS[1], math.ceil(paused_until - now + tonumber(ARGV[5])))
return {f(since), f(paused_until), f(now)}
"""
)

_REACHABLE = (
    _NOW
    + """
local s = redis.call('HMGET', KEYS[1], 'unreachable_since', 'paused_until')
if num(s[1]) ~= 0 then
  redis.call('HSET', KEYS[1], 'unreachable_since', '0', 'unreachable_tries', '0',
             'paused_until', f(math.min(num(s[2]), now)))
end
return {f(now)}
"""
)

_CAP = (
    _NOW
    + """
local cap, cap_idle, keep = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'in_flight_cap', 'last_send')
local learned, last_send = num(s[1]), num(s[2])
if learned > 0 and learned <= cap and now < last_send + cap_idle then
  return {'0', f(now)}
end
redis.call('HSET', KEYS[1], 'in_flight_cap', cap)
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], keep) end
return {'1', f(now)}
"""
)

_READ = (
    _NOW
    + """
return {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES'),
        f(now)}
"""
)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return without_password(url)


def connect(url: str, check: bool = True) -> Any:
    """A client for `url`, checked with a PING (`check`). ConfigError (exit 2) for a missing
    package, a malformed URL or a server that does not answer."""
    if redis is None:
        raise ConfigError("--redis needs the redis package: pip install 'imaginize[redis]'")
    shown = safe_url(url)
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5, decode_responses=True
        )
    except ValueError as exc:
        raise ConfigError(f"--redis {shown}: not a Redis URL ({exc})") from None
    try:
        if check:
            client.ping()
    except redis.exceptions.RedisError as exc:
        raise ConfigError(f"--redis {shown}: cannot use it ({exc})") from None
    return client


class RedisPacer(SharedPace):
    """The shared pace in Redis. `clock`: None to use Redis's clock (the real thing), or a
    function giving the time to use instead (tests)."""

    def __init__(
        self,
        url: str,
        digest: str,
        limits: Limits,
        *,
        client: Any = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = DEFAULT_MAX_WAIT,
        server: str = "the server",
        notice: Callable[[str], None] = lambda line: None,
        check: bool = True,
    ) -> None:
        """`check`: PING now, a ConfigError if that fails (the run's start); a worker started
        later does not, and waits for a Redis that is away like any other request."""
        if not digest:
            raise ValueError("a Redis pace needs the key's digest")
        self.url = safe_url(url)
        self.client = client if client is not None else connect(url, check)
        self.limits = limits
        self.max_wait = max_wait
        self.server = server
        self._fixed_clock = clock
        self._clock = clock or time.time
        self._sleep = sleep
        self._notice = notice
        self._away = False
        # Tickets whose give-back found Redis away: retried once it answers again, so they
        # do not hold their places until they expire.
        self._owed: list[str] = []
        prefix = f"imaginize:pace:{digest}"
        self.keys = [f"{prefix}:state", f"{prefix}:flight"]
        self._scripts = {
            name: self.client.register_script(text)
            for name, text in (
                ("reserve", _RESERVE),
                ("refund", _REFUND),
                ("pause", _PAUSE),
                ("unreachable", _UNREACHABLE),
                ("reachable", _REACHABLE),
                ("cap", _CAP),
                ("read", _READ),
            )
        }

    # -- talking to Redis ------------------------------------------------------------------

    def _now_arg(self) -> str:
        return "" if self._fixed_clock is None else repr(self._fixed_clock())

    def _run(self, name: str, *args: Any, once: bool = False) -> list[Any]:
        """Run one script. A Redis that is away is waited for (`once`: tried once, None)."""
        tries = 0
        while True:
            try:
                reply = self._scripts[name](keys=self.keys, args=[self._now_arg(), *args])
            except (RedisConnectionError, RedisTimeoutError):
                if once:
                    return []
                if not self._away:
                    self._away = True
                    # The same words from every worker: the launcher passes them on once.
                    self._notice(
                        f"Redis at {self.url} is unreachable: requests wait until it is back"
                    )
                tries += 1
                cancel.check()  # work given up on does not wait for Redis
                self._sleep(min(REDIS_BACKOFF_CAP, 0.5 * 2 ** (tries - 1)))
                continue
            if self._away:
                self._away = False
                self._notice(f"Redis at {self.url} is back: requests go on")
            return list(reply)

    def _local(self, when: float, server_now: float) -> float:
        """A Redis time on this process's clock (0 stays 0: "never")."""
        return when - server_now + self._clock() if when else 0.0

    # -- the SharedPace interface --------------------------------------------------------

    def _attempt(self, ticket: str, tokens: int) -> tuple[float | None, float]:
        limits = self.limits
        while self._owed and self._zrem(self._owed[-1]):
            self._owed.pop()
        kind, wait, paused_until, now = self._run(
            "reserve",
            ticket,
            limits.batch_size,
            repr(float(limits.batch_delay)),
            repr(rpm_interval(limits.rpm)) if limits.rpm else "0",
            -1 if limits.max_in_flight is None else limits.max_in_flight,
            repr(float(limits.in_flight_ttl)),
            tokens,
            repr(token_interval(limits.tpm)) if limits.tpm else "0",
            KEEP_SECONDS,
            repr(LEARNED_CAP_IDLE),
            repr(LINE_STALE),
            repr(LINE_POLL),
            repr(NEXT_POLL),
        )
        if kind == "full":
            self._free_the_dead()
        local_pause = self._local(float(paused_until), float(now))
        return (None if kind == "go" else float(wait)), local_pause

    def _free_the_dead(self) -> None:
        """Places held by processes of this host that are gone are freed at once; those of
        other hosts wait for their expiry."""
        try:
            tickets = self.client.zrange(self.keys[1], 0, -1)
            dead = [t for t in tickets if owner_is_dead(t)]
            if dead:
                self.client.zrem(self.keys[1], *dead)
        except (RedisConnectionError, RedisTimeoutError):
            pass  # the next reservation waits for Redis

    def _give_back(self, ticket: str) -> None:
        if not self._zrem(ticket):
            self._owed.append(ticket)

    def _zrem(self, ticket: str) -> bool:
        try:
            self.client.zrem(self.keys[1], ticket)
        except (RedisConnectionError, RedisTimeoutError):
            return False
        return True

    def _refund(self, tokens: int) -> None:
        if self.limits.tpm and tokens > 0:
            self._run("refund", repr(tokens * token_interval(self.limits.tpm)), once=True)

    def pause(self, seconds: float, reason: str) -> float:
        until, now = self._run("pause", repr(max(0.0, seconds)), reason, KEEP_SECONDS)
        return self._local(float(until), float(now))

    def unreachable(self, reason: str) -> float:
        since, until, now = (
            float(v)
            for v in self._run(
                "unreachable",
                repr(self.max_wait),
                repr(UNREACHABLE_BACKOFF_CAP),
                reason,
                KEEP_SECONDS,
            )
        )
        self._unreachable_verdict(since, now, reason)
        return self._local(until, now)

    def reachable(self) -> None:
        try:
            if not float(self.client.hget(self.keys[0], "unreachable_since") or 0):
                return  # the common case: one read
        except (RedisConnectionError, RedisTimeoutError):
            return  # nothing to clear that cannot wait for the next answer
        self._run("reachable")

    def cap_in_flight(self, cap: int) -> bool:
        lowered, _now = self._run("cap", max(1, int(cap)), repr(LEARNED_CAP_IDLE), KEEP_SECONDS)
        return str(lowered) == "1"

    def read(self) -> PaceState:
        """Advice, as the file pace's: an empty record while Redis is away (the launcher
        reads it between its other duties, and must not wait)."""
        reply = self._run("read", once=True)
        if not reply:
            return PaceState()
        fields, flight, now_text = reply
        now = float(now_text)
        data = dict(zip(fields[::2], fields[1::2], strict=True))
        in_flight = {
            str(t): self._local(float(e), now)
            for t, e in zip(flight[::2], flight[1::2], strict=True)
        }

        def number(name: str) -> float:
            try:
                return float(data.get(name, 0) or 0)
            except ValueError:
                return 0.0

        return PaceState(
            batch_sends=int(number("batch_sends")),
            last_send=self._local(number("last_send"), now),
            paused_until=self._local(number("paused_until"), now),
            pause_reason=str(data.get("pause_reason", "")),
            in_flight=in_flight,
            sends=int(number("sends")),
            unreachable_since=self._local(number("unreachable_since"), now),
            unreachable_tries=int(number("unreachable_tries")),
            token_tat=self._local(number("token_tat"), now),
            in_flight_cap=int(number("in_flight_cap")),
            next_in_line=str(data.get("next_in_line", "")),
            next_seen=self._local(number("next_seen"), now),
        )
