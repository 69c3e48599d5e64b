"""The arithmetic of the three algorithms, shared by every store.

Each store keeps a little state per holder and limit and updates it atomically in
its own way (a Lua script, compare-and-swap, a lock); what that state *means* -
whether a request fits, how many remain, when to come back - is computed here, once,
so that the three stores cannot drift apart.  The Redis script repeats only the
yes/no decision, with the same formula and the same tolerance.

``fixed``
    Windows aligned on the clock (``[k*w, (k+1)*w)``); a counter per window.
    Cheap and exact, but a client may send ``2 * amount`` requests around a window
    boundary.
``sliding``
    The sliding-window *counter*: the previous window's count, weighted by how much
    of it the sliding window still covers, plus the current count.  Smooths the
    boundary burst at the price of one more counter.
``gcra``
    The generic cell rate algorithm, a token bucket kept as one timestamp (the
    "theoretical arrival time"): requests are spaced ``window / amount`` apart on
    average, with bursts of up to ``amount``.  One key, one read and one write.
"""

from __future__ import annotations

import math

from .limits import Limit, LimitState

#: tolerance for float comparisons (a microsecond, the resolution of stored times;
#: a millionth of a request): the Redis scripts use the same value
EPSILON = 1e-6


def window_index(limit: Limit, now: float) -> int:
    return math.floor(now / limit.window)


def counts_now(
    limit: Limit, now: float, index: int | None, current: int, previous: int
) -> tuple[int, int]:
    """(current, previous) window counts at *now*, from counts saved in window *index*.

    A state saved in the window before the current one has become the previous
    window's; an older one, or none (``index`` None), counts nothing.
    """
    now_index = window_index(limit, now)
    if index == now_index:
        return current, previous
    if index == now_index - 1:
        return 0, current
    return 0, 0


def counter_allows(limit: Limit, now: float, current: int, previous: int, sliding: bool) -> bool:
    """Whether one more request fits, given the counts before it."""
    return _estimate(limit, now, current, previous, sliding) + 1 <= limit.amount + EPSILON


def _estimate(limit: Limit, now: float, current: int, previous: int, sliding: bool) -> float:
    if not sliding or previous <= 0:
        return float(current)
    window_end = (window_index(limit, now) + 1) * limit.window
    return previous * (window_end - now) / limit.window + current


def counter_state(
    limit: Limit,
    now: float,
    current: int,
    previous: int,
    *,
    sliding: bool,
    consumed: bool,
    allowed: bool | None = None,
) -> LimitState:
    """The verdict of a fixed or sliding window, from the counts *before* the request.

    *consumed*: the request was counted (every limit allowed it).  *allowed*
    overrides the decision when the store already made it.
    """
    if allowed is None:
        allowed = counter_allows(limit, now, current, previous, sliding)
    window_end = (window_index(limit, now) + 1) * limit.window
    used = _estimate(limit, now, current, previous, sliding) + (1 if consumed else 0)
    remaining = max(0, math.floor(limit.amount - used + EPSILON))
    retry_after = 0.0
    if not allowed:
        retry_after = _counter_retry_after(limit, now, current, previous, sliding, window_end)
        remaining = 0
    return LimitState(limit, allowed, remaining, window_end - now, retry_after)


def _counter_retry_after(
    limit: Limit, now: float, current: int, previous: int, sliding: bool, window_end: float
) -> float:
    """Seconds until the estimate leaves room for one request, if nobody else comes."""
    if not sliding:
        return window_end - now
    room = limit.amount - 1  # the estimate that still lets one request in
    if current <= room and previous > 0:
        # The previous window's weight shrinks as time passes; solve for the moment
        # previous * (window_end - t) / window + current == room.
        moment = window_end - limit.window * (room - current) / previous
    else:
        # Only the next window helps, where this window's count becomes "previous".
        moment = window_end + limit.window - limit.window * room / max(current, 1)
    return max(moment - now, 0.0)


def counter_ttl(limit: Limit, now: float, sliding: bool) -> int:
    """Whole seconds a window's counter must live (the next window still reads it)."""
    windows = 2 if sliding else 1
    return max(1, math.ceil((window_index(limit, now) + windows) * limit.window - now)) + 1


# -- gcra --------------------------------------------------------------------------------


def emission_interval(limit: Limit) -> float:
    return limit.window / limit.amount


def gcra_allows(limit: Limit, now: float, tat: float | None) -> bool:
    """Whether the bucket has room, given the stored theoretical arrival time."""
    base = now if tat is None else max(tat, now)
    return now + EPSILON >= base + emission_interval(limit) - limit.window


def gcra_next_tat(limit: Limit, now: float, tat: float | None) -> float:
    """The theoretical arrival time once this request is counted."""
    return (now if tat is None else max(tat, now)) + emission_interval(limit)


def gcra_state(
    limit: Limit, now: float, tat: float | None, *, consumed: bool, allowed: bool | None = None
) -> LimitState:
    """The verdict of the bucket, from the arrival time stored *before* the request."""
    if allowed is None:
        allowed = gcra_allows(limit, now, tat)
    interval = emission_interval(limit)
    # Work with times relative to now: absolute Unix times lose the precision that
    # "how many intervals fit" needs.
    ahead = 0.0 if tat is None else max(tat - now, 0.0)
    if consumed:
        ahead += interval
    remaining = max(0, math.floor((limit.window - ahead) / interval + EPSILON))
    retry_after = 0.0
    if not allowed:
        remaining = 0
        retry_after = max(ahead + interval - limit.window, 0.0)
    return LimitState(limit, allowed, remaining, ahead, retry_after)


def gcra_ttl(now: float, tat: float) -> int:
    """Whole seconds an arrival time must live: past it, the bucket is full anyway."""
    return max(1, math.ceil(tat - now)) + 1
