"""The three algorithms' semantics, walked through on a clock the test controls.

The memory store takes an injectable clock, so windows and buckets are checked at
exact instants without sleeping; the same arithmetic serves Redis and memcached,
whose behaviour on real servers is checked in ``test_ratelimit.py``.
"""

from __future__ import annotations

import pytest

from pyramid_kvs.ratelimit.headers import rate_limit_headers
from pyramid_kvs.ratelimit.limiter import RateLimiter
from pyramid_kvs.ratelimit.limits import Limit, Outcome, parse_limits, whole_seconds
from pyramid_kvs.ratelimit.settings import RateLimitSettings
from pyramid_kvs.settings import StoreSpec
from pyramid_kvs.stores.memory import MemoryStore


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(limits: str, algorithm: str, clock: Clock) -> RateLimiter:
    store = MemoryStore("rl::", clock=clock)
    settings = RateLimitSettings(
        store=StoreSpec(), limits=parse_limits(limits), algorithm=algorithm
    )
    return RateLimiter(store, settings, holder=lambda request: "holder")


def hit(rate_limiter: RateLimiter, holder: str = "holder") -> Outcome:
    batch = rate_limiter.store.batch()
    check = rate_limiter.queue(batch, holder)
    batch.execute()
    return check.outcome()


def test_parse_limits() -> None:
    assert parse_limits("15/second;1000/hour") == (Limit(15, 1), Limit(1000, 3600))
    assert parse_limits("5/minute, 10 per 2 hours") == (Limit(5, 60), Limit(10, 7200))
    assert parse_limits("3/2s") == (Limit(3, 2),)
    assert parse_limits("1/day;1/day") == (Limit(1, 86400),)
    assert parse_limits("none") == () and parse_limits("") == ()
    for bad in ("15", "15/fortnight", "x/second", "0/second", "15/0 seconds"):
        with pytest.raises(ValueError, match="expected"):
            parse_limits(bad)


def test_whole_seconds_round_up_but_ignore_float_noise() -> None:
    assert whole_seconds(0.2) == 1
    assert whole_seconds(1.0) == 1
    assert whole_seconds(0.1 * 3 / 0.3) == 1
    assert whole_seconds(1.0000001) == 1
    assert whole_seconds(1.01) == 2
    assert whole_seconds(0) == 0


def test_fixed_window() -> None:
    clock = Clock(1000.0)  # a window of 10 s is [1000, 1010)
    rate_limiter = limiter("3/10seconds", "fixed", clock)
    assert [hit(rate_limiter).states[0].remaining for _ in range(3)] == [2, 1, 0]
    clock.now = 1004.0
    denied = hit(rate_limiter)
    assert not denied.allowed
    assert denied.states[0].retry_after == pytest.approx(6.0)
    assert denied.retry_after == 6
    clock.now = 1009.999
    assert not hit(rate_limiter).allowed
    clock.now = 1010.0  # a new window: the full quota again
    fresh = hit(rate_limiter)
    assert fresh.allowed and fresh.states[0].remaining == 2
    assert fresh.states[0].reset == pytest.approx(10.0)


def test_denied_requests_do_not_count() -> None:
    clock = Clock(1000.0)
    rate_limiter = limiter("2/10seconds", "sliding", clock)
    hit(rate_limiter), hit(rate_limiter)
    for _ in range(5):
        assert not hit(rate_limiter).allowed
    # Next window: only the 2 allowed requests weigh on it, not the 5 refused.
    clock.now = 1015.0
    outcome = hit(rate_limiter)
    assert outcome.allowed  # estimate 2 * 0.5 = 1, one more fits


def test_sliding_window_smooths_the_boundary_burst() -> None:
    clock = Clock(1005.0)
    rate_limiter = limiter("10/10seconds", "sliding", clock)
    assert all(hit(rate_limiter).allowed for _ in range(10))
    # A fixed window would allow 10 more at 1010; the sliding window still counts
    # the previous window in full at its very start.
    clock.now = 1010.0
    denied = hit(rate_limiter)
    assert not denied.allowed
    # previous 10 weighted (1020 - t) / 10 must drop to 9: at t = 1011.
    assert denied.states[0].retry_after == pytest.approx(1.0)
    clock.now = 1011.0
    allowed = hit(rate_limiter)
    assert allowed.allowed and allowed.states[0].remaining == 0
    assert not hit(rate_limiter).allowed
    clock.now = 1015.0  # weight 0.5: estimate 5 + 1 = 6, so 4 more fit
    assert [hit(rate_limiter).allowed for _ in range(5)] == [True] * 4 + [False]


def test_sliding_window_retry_after_when_the_current_window_is_full() -> None:
    clock = Clock(1000.0)
    rate_limiter = limiter("4/10seconds", "sliding", clock)
    for _ in range(4):
        hit(rate_limiter)
    denied = hit(rate_limiter)
    # In the next window the 4 requests weigh 4 * (1020 - t) / 10; 3 at t = 1012.5.
    assert denied.states[0].retry_after == pytest.approx(12.5)
    clock.now = 1012.4
    assert not hit(rate_limiter).allowed
    clock.now = 1012.5
    assert hit(rate_limiter).allowed


def test_gcra_spaces_requests_after_a_burst() -> None:
    clock = Clock(1000.0)
    rate_limiter = limiter("5/10seconds", "gcra", clock)  # one request every 2 s
    assert [hit(rate_limiter).states[0].remaining for _ in range(5)] == [4, 3, 2, 1, 0]
    denied = hit(rate_limiter)
    assert not denied.allowed
    assert denied.states[0].retry_after == pytest.approx(2.0)
    clock.now = 1001.9
    assert not hit(rate_limiter).allowed
    clock.now = 1002.0
    assert hit(rate_limiter).allowed
    assert not hit(rate_limiter).allowed
    clock.now = 1012.0  # long enough idle: a full bucket
    full = hit(rate_limiter)
    assert full.states[0].remaining == 4
    assert full.states[0].reset == pytest.approx(2.0)


def test_several_limits_are_all_or_nothing() -> None:
    for algorithm in ("fixed", "sliding", "gcra"):
        clock = Clock(1000.0)
        rate_limiter = limiter("2/10seconds;3/100seconds", algorithm, clock)
        assert hit(rate_limiter).allowed and hit(rate_limiter).allowed
        refused = hit(rate_limiter)  # the 10 s limit refuses ...
        assert not refused.allowed
        short, long = refused.states
        assert not short.allowed and long.allowed
        assert long.remaining == 1, algorithm  # ... and the 100 s limit was not charged
        clock.now = 1030.0
        last = hit(rate_limiter)
        assert last.allowed and last.states[1].remaining == 0, algorithm
        refused = hit(rate_limiter)  # now the 100 s limit refuses
        assert not refused.allowed and refused.states[0].allowed
        # Windows wait for the 100 s window to end (or slide); the bucket refills
        # one request every 100 / 3 s.
        assert refused.retry_after >= (3 if algorithm == "gcra" else 60), algorithm


def test_holders_are_counted_apart() -> None:
    rate_limiter = limiter("1/minute", "fixed", Clock())
    assert hit(rate_limiter, "a").allowed
    assert not hit(rate_limiter, "a").allowed
    assert hit(rate_limiter, "b").allowed


def test_headers_legacy_and_ietf() -> None:
    clock = Clock(1000.5)
    rate_limiter = limiter("15/second", "fixed", clock)
    for _ in range(12):
        outcome = hit(rate_limiter)
    assert dict(rate_limit_headers(outcome, "both")) == {
        "X-RateLimit-Limit": "15",
        "X-RateLimit-Remaining": "3",
        "X-RateLimit-Reset": "1",
        "RateLimit-Policy": '"default";q=15;w=1',
        "RateLimit": '"default";r=3;t=1',
    }
    assert [name for name, _ in rate_limit_headers(outcome, "legacy")] == [
        "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
    ]  # fmt: skip
    assert [name for name, _ in rate_limit_headers(outcome, "ietf")] == [
        "RateLimit-Policy", "RateLimit",
    ]  # fmt: skip
    assert list(rate_limit_headers(outcome, "none")) == []


def test_headers_with_several_limits_describe_the_tightest() -> None:
    clock = Clock(1000.0)
    rate_limiter = limiter("10/second;12/minute", "fixed", clock)
    for _ in range(9):
        outcome = hit(rate_limiter)
    headers = dict(rate_limit_headers(outcome))
    # 1 left of 10/second is tighter than 3 left of 12/minute
    assert headers["X-RateLimit-Limit"] == "10"
    assert headers["X-RateLimit-Remaining"] == "1"
    assert headers["RateLimit-Policy"] == '"default-1s";q=10;w=1, "default-60s";q=12;w=60'
    # windows are aligned on the clock: the minute in progress ends at 1020
    assert headers["RateLimit"] == '"default-1s";r=1;t=1, "default-60s";r=3;t=20'
