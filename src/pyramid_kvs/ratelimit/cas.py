"""Rate limiting by compare-and-swap: atomic commands, never a read-then-write race.

For stores with the ``CompareAndSwapStore`` capability (memcached), which have no
scripts: each algorithm is built from atomic commands.

* **fixed / sliding** - one counter per window (the window index is in the key),
  bumped with the contract's atomic ``incr``.  ``incr`` hands every concurrent
  request a distinct count, so exactly ``amount`` of them fit.  A request that does
  not fit every limit takes all its increments back (``incr`` by -1): denied
  requests never count, and several limits pass or fail together.  While a denied
  request is being taken back, a concurrent one may see its count and be refused
  too: this errs on the strict side, never lets an extra request through.  The
  sliding window also reads the previous window's counter (one ``get_many``).
* **gcra** - the arrival times of all of a holder's limits live in *one* value,
  updated with ``gets`` / ``cas`` (``add`` when absent) and retried when another
  request changed it in between: all limits move together or not at all.

Such a store cannot tell the time, so the windows and arrival times follow the web
server's clock: keep the servers' clocks in sync (NTP), or use Redis.

Round trips on memcached: fixed, one ``incr`` (two when a window's counter is
created); sliding, one more for the previous window; gcra, ``gets`` then ``cas``.  A
denied request pays one ``decr`` per limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from ..stores import Batch, StoreError, WrongKind
from ..stores.base import CompareAndSwapStore
from . import algorithms
from .limits import Limit, LimitState, limit_key

#: compare-and-swap attempts before a GCRA check gives up, each failed one meaning
#: another request of the same holder won the race (the check is then retried on
#: fresh state).  Every concurrent request of a holder races on this one key, so
#: more attempts are allowed than for a session's record (RECORD_CAS_ATTEMPTS of
#: ``stores.memcached``); giving up answers as ``on_error`` says.
GCRA_CAS_ATTEMPTS = 32


class CompareAndSwapEngine:
    """The three algorithms on a ``CompareAndSwapStore``."""

    def __init__(
        self,
        store: CompareAndSwapStore,
        algorithm: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.algorithm = algorithm
        self.clock = clock

    def queue(
        self, batch: Batch, base_key: str, limits: Sequence[Limit]
    ) -> Callable[[], tuple[LimitState, ...]]:
        # Without a pipeline to join, the check runs when its result is read.
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
                [window_counter(key, index - 1) for key, index in zip(keys, indexes, strict=True)]
            )
            previous = [self._as_count(raw) for raw in saved]
        # Every counter is bumped, even after one refused, so that the headers report
        # every limit truly; a refused request then takes all its increments back.
        counters = [window_counter(key, index) for key, index in zip(keys, indexes, strict=True)]
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

    def peek(self, base_key: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        """The states a check would find now, read with one ``get_many`` or ``get``."""
        now = self.clock()
        if self.algorithm == "gcra":
            tats = self._as_arrivals(self.store.get(base_key), len(limits))
            return tuple(
                algorithms.gcra_state(limit, now, tat, consumed=False)
                for limit, tat in zip(limits, tats, strict=True)
            )
        sliding = self.algorithm == "sliding"
        counters = []
        for limit in limits:
            key, index = limit_key(base_key, limit), algorithms.window_index(limit, now)
            counters += [window_counter(key, index), window_counter(key, index - 1)]
        counts = [self._as_count(raw) for raw in self.store.get_many(counters)]
        return tuple(
            algorithms.counter_state(
                limit,
                now,
                counts[2 * i],
                counts[2 * i + 1] if sliding else 0,
                sliding=sliding,
                consumed=False,
            )
            for i, limit in enumerate(limits)
        )

    # -- gcra ----------------------------------------------------------------------------

    def _gcra(self, key: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        # One value holds every limit's arrival time: one key per holder and scope.
        for _ in range(GCRA_CAS_ATTEMPTS):
            raw, token = self.store.gets(key)
            now = self.clock()
            tats = self._as_arrivals(raw, len(limits))
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
            ttl = algorithms.gcra_ttl(now, max(arrivals))
            if raw is None:
                stored = self.store.add(key, value, ttl)
            else:
                stored = self.store.cas(key, value, token, ttl)
            if stored:
                return states
        raise StoreError(f"{self.store.name}: the rate limit of {key!r} kept changing; gave up")

    def _as_count(self, raw: bytes | None) -> int:
        """A window's saved count; ``WrongKind`` when the key holds something else."""
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError:
            raise WrongKind(
                f"{self.store.name}: a rate limit counter holds something else"
            ) from None

    def _as_arrivals(self, raw: bytes | None, count: int) -> list[float | None]:
        """The saved arrival times; none when absent or written for other limits.

        Raises ``WrongKind`` when the key holds something else than arrival times.
        """
        if raw is None:
            return [None] * count
        try:
            tats = [float(part) for part in raw.split()]
        except ValueError:
            raise WrongKind(f"{self.store.name}: a rate limit key holds something else") from None
        if not all(math.isfinite(tat) for tat in tats):
            raise WrongKind(f"{self.store.name}: a rate limit key holds times that are not finite")
        if len(tats) != count:
            return [None] * count  # saved for other limits (the settings changed)
        return list(tats)


def window_counter(key: str, index: int) -> str:
    """The counter of the window *index* of the limit whose key is *key*."""
    return f"{key}:{index}"
