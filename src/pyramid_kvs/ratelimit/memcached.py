"""Rate limiting on memcached: atomic commands, never a read-then-write race.

memcached has no scripts, so each algorithm is built from its atomic commands:

* **fixed / sliding** - one counter per window (the window index is in the key),
  bumped with ``incr`` (created with ``add`` on a miss, as the store's ``incr``
  does).  ``incr`` hands every concurrent request a distinct count, so exactly
  ``amount`` of them fit.  A request that does not fit every limit takes all its
  increments back (``decr``): denied requests never count, and several limits pass
  or fail together.  While a denied request is being taken back, a concurrent one
  may see its count and be refused too: memcached errs on the strict side, never
  lets an extra request through.  The sliding window also reads the
  previous window's counter (one ``get_many``).
* **gcra** - the arrival times of all of a holder's limits live in *one* value,
  updated with ``gets`` / ``cas`` (``add`` when absent) and retried when another
  request changed it in between: all limits move together or not at all.

memcached cannot tell the time, so the windows and arrival times follow the web
server's clock: keep the servers' clocks in sync (NTP), or use Redis.

Round trips: fixed, one ``incr`` (two when a window's counter is created); sliding,
one more for the previous window; gcra, ``gets`` then ``cas``.  A denied request
pays one ``decr`` per limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from ..stores import Batch, StoreError, WrongKind
from ..stores.memcached import MemcachedStore, memcached_expiry, memcached_key
from . import algorithms
from .limits import Limit, LimitState, limit_key

#: compare-and-swap attempts before a GCRA check gives up (each one means another
#: request of the same holder won the race; it is then retried on fresh state)
CAS_ATTEMPTS = 32


class MemcachedEngine:
    """The three algorithms on a :class:`MemcachedStore`."""

    def __init__(
        self,
        store: MemcachedStore,
        algorithm: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.algorithm = algorithm
        self.clock = clock

    def queue(
        self, batch: Batch, base_key: str, limits: Sequence[Limit]
    ) -> Callable[[], tuple[LimitState, ...]]:
        # memcached has no pipeline to join: the check runs when its result is read.
        return lambda: self.check(base_key, limits)

    def check(self, base_key: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        if self.algorithm == "gcra":
            return self._gcra(base_key, limits)
        return self._counters([limit_key(base_key, limit) for limit in limits], limits)

    # -- fixed and sliding windows ------------------------------------------------------

    def _counters(self, keys: Sequence[str], limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        sliding = self.algorithm == "sliding"
        now = self.clock()
        indexes = [algorithms.window_index(limit, now) for limit in limits]
        previous = [0] * len(limits)
        if sliding:
            saved = self.store.get_many(
                [f"{key}:{index - 1}" for key, index in zip(keys, indexes, strict=True)]
            )
            previous = [_as_count(raw) for raw in saved]
        # Every counter is bumped, even after one refused, so that the headers report
        # every limit truly; a refused request then takes all its increments back.
        counters = [f"{key}:{index}" for key, index in zip(keys, indexes, strict=True)]
        counts = [
            self.store.incr(counter, 1, algorithms.counter_ttl(limit, now, sliding)) - 1
            for counter, limit in zip(counters, limits, strict=True)
        ]
        consumed = all(
            algorithms.counter_allows(limit, now, current, before, sliding)
            for limit, current, before in zip(limits, counts, previous, strict=True)
        )
        if not consumed:
            for counter in counters:
                self.store.incr(counter, -1)
        return tuple(
            algorithms.counter_state(
                limit, now, current, before, sliding=sliding, consumed=consumed
            )
            for limit, current, before in zip(limits, counts, previous, strict=True)
        )

    # -- gcra ----------------------------------------------------------------------------

    def _gcra(self, key: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        # One value holds every limit's arrival time: one key per holder and scope.
        wire_key = memcached_key(self.store.full_key(key))
        for _ in range(CAS_ATTEMPTS):
            raw, token = self.store.call("gets", wire_key)
            now = self.clock()
            tats = _as_arrivals(raw, len(limits))
            consumed = all(
                algorithms.gcra_allows(limit, now, tat)
                for limit, tat in zip(limits, tats, strict=True)
            )
            states = tuple(
                algorithms.gcra_state(limit, now, tat, consumed=consumed)
                for limit, tat in zip(limits, tats, strict=True)
            )
            if not consumed:
                return states
            arrivals = [
                algorithms.gcra_next_tat(limit, now, tat)
                for limit, tat in zip(limits, tats, strict=True)
            ]
            value = " ".join(f"{tat:.6f}" for tat in arrivals).encode()
            expiry = memcached_expiry(algorithms.gcra_ttl(now, max(arrivals)))
            if raw is None:
                stored = self.store.call("add", wire_key, value, expiry)
            else:
                stored = self.store.call("cas", wire_key, value, token, expiry)
            if stored:
                return states
        raise StoreError(f"memcached: the rate limit of {key!r} kept changing; gave up")


def _as_count(raw: bytes | None) -> int:
    """A window's saved count; :class:`WrongKind` when the key holds something else."""
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise WrongKind("memcached: a rate limit counter holds something else") from None


def _as_arrivals(raw: bytes | None, count: int) -> list[float | None]:
    """The saved arrival times; none when absent or written for other limits.

    Raises :class:`WrongKind` when the key holds something else than arrival times.
    """
    if raw is None:
        return [None] * count
    try:
        tats = [float(part) for part in raw.split()]
    except ValueError:
        raise WrongKind("memcached: a rate limit key holds something else") from None
    if not all(math.isfinite(tat) for tat in tats):
        raise WrongKind("memcached: a rate limit key holds times that are not finite")
    if len(tats) != count:
        return [None] * count  # saved for other limits (the settings changed)
    return list(tats)
