"""Rate limiting under a lock: each check is one critical section.

For stores with the ``LockingStore`` capability (the memory store).  The store's
lock is held while the state of every limit is read, judged and written, so
concurrent requests of one process are counted exactly.  The clock is the store's
own (injectable), which lets the tests walk through windows without sleeping.
State is kept as short ASCII values: ``"<window index> <count> <previous count>"``
for counters, the arrival time for GCRA.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..stores import Batch, StoreError
from ..stores.base import LockingStore
from . import algorithms
from .limits import Limit, LimitState, limit_key


class LockedEngine:
    """The three algorithms on a ``LockingStore``; no I/O, no round trip."""

    def __init__(self, store: LockingStore, algorithm: str) -> None:
        self.store = store
        self.algorithm = algorithm

    def queue(
        self, batch: Batch, base_key: str, limits: Sequence[Limit]
    ) -> Callable[[], tuple[LimitState, ...]]:
        # Nothing to send: the check runs when its result is read.
        return lambda: self.check(base_key, limits)

    def check(self, base_key: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        keys = [limit_key(base_key, limit) for limit in limits]
        with self.store.atomically():
            now = self.store.now()
            saved = [self.store.get(key) for key in keys]
            try:
                if self.algorithm == "gcra":
                    return self._gcra(now, keys, limits, saved)
                return self._counters(now, keys, limits, saved)
            except (ValueError, OverflowError) as exc:
                # what Redis answers WRONGTYPE to, and memcached refuses to increment
                raise StoreError(f"a rate limit key holds something else: {exc}") from None

    def peek(self, base_key: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        """The states a check would find now; nothing is written."""
        keys = [limit_key(base_key, limit) for limit in limits]
        with self.store.atomically():
            now = self.store.now()
            saved = [self.store.get(key) for key in keys]
        try:
            if self.algorithm == "gcra":
                return tuple(
                    algorithms.gcra_state(
                        limit, now, None if raw is None else _finite(float(raw)), consumed=False
                    )
                    for limit, raw in zip(limits, saved, strict=True)
                )
            sliding = self.algorithm == "sliding"
            return tuple(
                algorithms.counter_state(
                    limit, now, *_counts(limit, now, raw), sliding=sliding, consumed=False
                )
                for limit, raw in zip(limits, saved, strict=True)
            )
        except (ValueError, OverflowError) as exc:
            raise StoreError(f"a rate limit key holds something else: {exc}") from None

    def _counters(
        self,
        now: float,
        keys: Sequence[str],
        limits: Sequence[Limit],
        saved: Sequence[bytes | None],
    ) -> tuple[LimitState, ...]:
        sliding = self.algorithm == "sliding"
        counts = [_counts(limit, now, raw) for limit, raw in zip(limits, saved, strict=True)]
        consumed = all(
            algorithms.counter_allows(limit, now, current, previous, sliding)
            for limit, (current, previous) in zip(limits, counts, strict=True)
        )
        if consumed:
            for key, limit, (current, previous) in zip(keys, limits, counts, strict=True):
                index = algorithms.window_index(limit, now)
                value = f"{index} {current + 1} {previous}".encode()
                self.store.set(key, value, algorithms.counter_ttl(limit, now, sliding))
        return tuple(
            algorithms.counter_state(
                limit, now, current, previous, sliding=sliding, consumed=consumed
            )
            for limit, (current, previous) in zip(limits, counts, strict=True)
        )

    def _gcra(
        self,
        now: float,
        keys: Sequence[str],
        limits: Sequence[Limit],
        saved: Sequence[bytes | None],
    ) -> tuple[LimitState, ...]:
        tats = [None if raw is None else _finite(float(raw)) for raw in saved]
        consumed = all(
            algorithms.gcra_allows(limit, now, tat)
            for limit, tat in zip(limits, tats, strict=True)
        )
        if consumed:
            for key, limit, tat in zip(keys, limits, tats, strict=True):
                new_tat = algorithms.gcra_next_tat(limit, now, tat)
                self.store.set(key, f"{new_tat:.6f}".encode(), algorithms.gcra_ttl(now, new_tat))
        return tuple(
            algorithms.gcra_state(limit, now, tat, consumed=consumed)
            for limit, tat in zip(limits, tats, strict=True)
        )


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"an arrival time of {value}")
    return value


def _counts(limit: Limit, now: float, raw: bytes | None) -> tuple[int, int]:
    """(current, previous) window counts from a saved ``"index count previous"``."""
    if raw is None:
        return 0, 0
    index, current, previous = raw.split()
    return algorithms.counts_now(limit, now, int(index), int(current), int(previous))
