"""Rate limiting by a script: every limit of a request checked in one atomic command.

For stores with the ``ScriptingStore`` capability (Redis).  The script reads each
limit's state, decides, and writes only if *every* limit has room, so several
limits are checked all-or-nothing and no interleaving of clients can let an extra
request through.  It reads the time from the server (``TIME``): every web server
shares the store's clock, and a skewed server clock cannot move a window.

The check is queued on the request's batch (``ScriptingBatch.run_script``), so it
travels in the same round trip as whatever else the request batches - the session
load, for one.  The script returns the time it used and the state it found; the
remaining quota and the waits are computed in Python by ``algorithms``, the same
code the other engines use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..stores import Batch
from ..stores.base import Script, ScriptArg, ScriptingBatch, ScriptingStore
from . import algorithms
from .limits import Limit, LimitState, limit_key

# Both scripts start the same way: effects replication (needed before Redis 5 to
# write after reading TIME; a no-op since), and the time as seconds.
_PROLOGUE = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local epsilon = 1e-6
local consumed = 1
local reply = {string.format('%.6f', now), 1}
"""

# KEYS: one hash per limit {i: window index, c: its count, p: previous window's count}.
# ARGV: '1' for the sliding window, '0' for fixed; then amount, window per limit.
# Reply: now, consumed, then allowed, current, previous per limit (counts before).
COUNTERS = Script(
    _PROLOGUE
    + """
local sliding = ARGV[1] == '1'
local states = {}
for i = 1, #KEYS do
    local amount = tonumber(ARGV[2 * i])
    local window = tonumber(ARGV[2 * i + 1])
    local index = math.floor(now / window)
    local saved = redis.call('HMGET', KEYS[i], 'i', 'c', 'p')
    local saved_index = tonumber(saved[1])
    local current, previous = 0, 0
    if saved_index == index then
        current = tonumber(saved[2]) or 0
        previous = tonumber(saved[3]) or 0
    elseif saved_index == index - 1 then
        previous = tonumber(saved[2]) or 0
    end
    local estimate = current
    if sliding and previous > 0 then
        estimate = previous * ((index + 1) * window - now) / window + current
    end
    local allowed = 0
    if estimate + 1 <= amount + epsilon then allowed = 1 else consumed = 0 end
    states[i] = {index, current, previous, window}
    reply[#reply + 1] = allowed
    reply[#reply + 1] = current
    reply[#reply + 1] = previous
end
if consumed == 1 then
    local windows = 1
    if sliding then windows = 2 end
    for i = 1, #KEYS do
        local s = states[i]
        redis.call('HSET', KEYS[i], 'i', s[1], 'c', s[2] + 1, 'p', s[3])
        redis.call('EXPIREAT', KEYS[i], (s[1] + windows) * s[4] + 1)
    end
end
reply[2] = consumed
return reply
"""
)

# KEYS: one string per limit, the theoretical arrival time.
# ARGV: amount, window per limit.
# Reply: now, consumed, then allowed and the saved arrival time ('' if none) per limit.
GCRA = Script(
    _PROLOGUE
    + """
local arrivals = {}
for i = 1, #KEYS do
    local amount = tonumber(ARGV[2 * i - 1])
    local window = tonumber(ARGV[2 * i])
    local saved = redis.call('GET', KEYS[i])
    local base = now
    if saved then
        local tat = tonumber(saved)
        if tat == nil or tat ~= tat or tat == math.huge or tat == -math.huge then
            return redis.error_reply('ERR pyramid_kvs: not an arrival time: ' .. KEYS[i])
        end
        base = math.max(tat, now)
    end
    local arrival = base + window / amount
    local allowed = 0
    if now + epsilon >= arrival - window then allowed = 1 else consumed = 0 end
    arrivals[i] = arrival
    reply[#reply + 1] = allowed
    reply[#reply + 1] = saved or ''
end
if consumed == 1 then
    for i = 1, #KEYS do
        local ttl = math.ceil((arrivals[i] - now) * 1000) + 1000
        redis.call('SET', KEYS[i], string.format('%.6f', arrivals[i]), 'PX', ttl)
    end
end
reply[2] = consumed
return reply
"""
)


# Reads what the two scripts above read, and writes nothing: for looking at a holder's
# state (RateLimiter.peek).  ARGV[1]: 'gcra', or anything else for the counters.
# Reply: now, then per limit the saved arrival time ('' if none), or the saved
# window index, count and previous count ('' for each field missing).
PEEK = Script("""
local clock = redis.call('TIME')
local reply = {string.format('%.6f', tonumber(clock[1]) + tonumber(clock[2]) / 1000000)}
for i = 1, #KEYS do
    if ARGV[1] == 'gcra' then
        reply[#reply + 1] = redis.call('GET', KEYS[i]) or ''
    else
        local saved = redis.call('HMGET', KEYS[i], 'i', 'c', 'p')
        for field = 1, 3 do reply[#reply + 1] = saved[field] or '' end
    end
end
return reply
""")


class ScriptedEngine:
    """The three algorithms on a ``ScriptingStore``: one script per check."""

    def __init__(self, store: ScriptingStore, algorithm: str) -> None:
        self.store = store
        self.algorithm = algorithm

    def queue(
        self, batch: Batch, base_key: str, limits: Sequence[Limit]
    ) -> Callable[[], tuple[LimitState, ...]]:
        if not isinstance(batch, ScriptingBatch):
            raise TypeError(f"a rate limit check needs a batch of its {self.store.name} store")
        keys = [limit_key(base_key, limit) for limit in limits]
        args: list[ScriptArg] = []
        for limit in limits:
            args += [limit.amount, limit.window]
        if self.algorithm == "gcra":
            pending = batch.run_script(
                GCRA, keys, args, lambda reply: self._gcra_states(reply, limits), store=self.store
            )
        else:
            sliding = self.algorithm == "sliding"
            pending = batch.run_script(
                COUNTERS,
                keys,
                ["1" if sliding else "0", *args],
                lambda reply: self._counter_states(reply, limits, sliding),
                store=self.store,
            )
        return lambda: pending.value

    def peek(self, base_key: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        """The states a check would find now: one read-only script, one round trip."""
        batch = self.store.batch()
        keys = [limit_key(base_key, limit) for limit in limits]
        pending = batch.run_script(
            PEEK,
            keys,
            [self.algorithm],
            lambda reply: self._peeked(reply, limits),
            store=self.store,
        )
        batch.execute()
        return pending.value

    def _peeked(self, reply: list[Any], limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        now = float(reply[0])
        if self.algorithm == "gcra":
            return tuple(
                algorithms.gcra_state(limit, now, float(saved) if saved else None, consumed=False)
                for limit, saved in zip(limits, reply[1:], strict=True)
            )
        states = []
        for i, limit in enumerate(limits):
            index, current, previous = reply[1 + 3 * i : 4 + 3 * i]
            counts = algorithms.counts_now(
                limit, now, int(index) if index else None, int(current or 0), int(previous or 0)
            )
            states.append(
                algorithms.counter_state(
                    limit, now, *counts, sliding=self.algorithm == "sliding", consumed=False
                )
            )
        return tuple(states)

    @staticmethod
    def _counter_states(
        reply: list[Any], limits: Sequence[Limit], sliding: bool
    ) -> tuple[LimitState, ...]:
        now, consumed = float(reply[0]), bool(reply[1])
        return tuple(
            algorithms.counter_state(
                limit,
                now,
                int(reply[2 + 3 * i + 1]),
                int(reply[2 + 3 * i + 2]),
                sliding=sliding,
                consumed=consumed,
                allowed=bool(reply[2 + 3 * i]),
            )
            for i, limit in enumerate(limits)
        )

    @staticmethod
    def _gcra_states(reply: list[Any], limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        now, consumed = float(reply[0]), bool(reply[1])
        states = []
        for i, limit in enumerate(limits):
            saved = reply[2 + 2 * i + 1]
            tat = float(saved) if saved else None
            allowed = bool(reply[2 + 2 * i])
            states.append(
                algorithms.gcra_state(limit, now, tat, consumed=consumed, allowed=allowed)
            )
        return tuple(states)
