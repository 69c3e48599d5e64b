"""The circuit breaker, on an injected clock: no test here sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from pyramid_kvs.stores import StoreError, StoreUnavailable
from pyramid_kvs.stores.breaker import (
    DEFAULT_DOWN_FOR,
    CircuitBreaker,
    pop_down_for,
    to_down_for,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """A fake server call counting how often the breaker let it through."""

    def __init__(self) -> None:
        self.calls = 0
        self.failure: Exception | None = None

    def __call__(self) -> str:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return "answer"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("test", down_for=0.5, clock=clock)


def fails_fast(breaker: CircuitBreaker, server: Server) -> bool:
    """Whether a call fails without reaching *server*."""
    before = server.calls
    with pytest.raises(StoreUnavailable):
        breaker.call(server)
    return server.calls == before


def test_a_closed_breaker_passes_calls_and_results(breaker: CircuitBreaker) -> None:
    server = Server()
    assert breaker.call(server) == "answer"
    assert breaker.call(lambda a, b=0: a + b, 1, b=2) == 3
    assert server.calls == 1 and not breaker.is_open


def test_a_failure_opens_it_and_calls_fail_without_reaching_the_server(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    server = Server()
    server.failure = StoreUnavailable("refused")
    with pytest.raises(StoreUnavailable, match="refused"):
        breaker.call(server)
    assert breaker.is_open and server.calls == 1
    server.failure = None  # the server is back, but the breaker does not know yet
    for _ in range(10):
        assert fails_fast(breaker, server)
    clock.now += 0.49
    assert fails_fast(breaker, server)
    with pytest.raises(StoreUnavailable, match="refused"):  # the cause is kept
        breaker.call(server)


def test_after_down_for_one_probe_goes_through_and_its_success_closes_it(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    server = Server()
    server.failure = StoreUnavailable("refused")
    with pytest.raises(StoreUnavailable):
        breaker.call(server)
    server.failure = None
    clock.now += 0.5
    assert breaker.call(server) == "answer"
    assert not breaker.is_open
    assert breaker.call(server) == "answer"
    assert server.calls == 3


def test_a_failed_probe_opens_it_for_another_down_for(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    server = Server()
    server.failure = StoreUnavailable("timed out")
    with pytest.raises(StoreUnavailable):
        breaker.call(server)
    clock.now += 0.6
    with pytest.raises(StoreUnavailable):
        breaker.call(server)  # the probe
    assert server.calls == 2
    clock.now += 0.4
    assert fails_fast(breaker, server)
    clock.now += 0.1
    server.failure = None
    assert breaker.call(server) == "answer"


def test_while_the_probe_is_out_the_other_calls_fail_fast(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    server = Server()
    server.failure = StoreUnavailable("refused")
    with pytest.raises(StoreUnavailable):
        breaker.call(server)
    server.failure = None
    clock.now += 1
    others: list[bool] = []

    def probe() -> str:
        # called by the breaker as the probe: meanwhile, others must fail fast
        others.append(fails_fast(breaker, server))
        others.append(fails_fast(breaker, server))
        return server()

    assert breaker.call(probe) == "answer"
    assert others == [True, True]
    assert not breaker.is_open


def test_an_error_reply_is_no_outage(breaker: CircuitBreaker, clock: Clock) -> None:
    server = Server()
    server.failure = StoreError("READONLY You can't write against a read only replica")
    for _ in range(3):
        with pytest.raises(StoreError) as raised:
            breaker.call(server)
        assert not isinstance(raised.value, StoreUnavailable)
    assert not breaker.is_open and server.calls == 3


def test_an_error_reply_to_the_probe_closes_it(breaker: CircuitBreaker, clock: Clock) -> None:
    server = Server()
    server.failure = StoreUnavailable("refused")
    with pytest.raises(StoreUnavailable):
        breaker.call(server)
    clock.now += 0.5
    server.failure = StoreError("OOM command not allowed")
    with pytest.raises(StoreError):
        breaker.call(server)
    assert not breaker.is_open  # the server answered: it is up


def test_a_probe_failing_with_a_bug_leaves_the_next_call_to_probe(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    server = Server()
    server.failure = StoreUnavailable("refused")
    with pytest.raises(StoreUnavailable):
        breaker.call(server)
    clock.now += 0.5
    server.failure = TypeError("a bug")
    with pytest.raises(TypeError):
        breaker.call(server)
    assert breaker.is_open
    server.failure = None
    assert breaker.call(server) == "answer"  # not stuck waiting for a lost probe
    assert not breaker.is_open


def test_a_late_failure_of_a_call_sent_before_opening_extends_it(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    server = Server()
    entered, release = threading.Event(), threading.Event()

    def slow_call() -> str:  # admitted while closed, times out after the opening
        entered.set()
        release.wait(5)
        raise StoreUnavailable("timed out")

    def run_slow_call() -> None:
        with pytest.raises(StoreUnavailable):
            breaker.call(slow_call)

    slow = threading.Thread(target=run_slow_call)
    slow.start()
    assert entered.wait(5)
    server.failure = StoreUnavailable("refused")
    with pytest.raises(StoreUnavailable):
        breaker.call(server)  # opens
    clock.now += 0.4
    release.set()
    slow.join()  # fails 0.4 s after the opening: down for 0.5 s from now
    clock.now += 0.4
    assert fails_fast(breaker, server)
    clock.now += 0.1
    server.failure = None
    assert breaker.call(server) == "answer"


def test_threads_share_one_breaker(breaker: CircuitBreaker, clock: Clock) -> None:
    server = Server()
    server.failure = StoreUnavailable("refused")
    with pytest.raises(StoreUnavailable):
        breaker.call(server)
    clock.now += 1
    server.failure = None
    release = threading.Event()
    entered = threading.Event()

    def slow_probe() -> str:
        entered.set()
        release.wait(5)
        return server()

    results: list[object] = []

    def run(function: Callable[[], str]) -> None:
        try:
            results.append(breaker.call(function))
        except StoreUnavailable as exc:
            results.append(exc)

    prober = threading.Thread(target=run, args=(slow_probe,))
    prober.start()
    assert entered.wait(5)
    others = [threading.Thread(target=run, args=(server,)) for _ in range(8)]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join()
    release.set()
    prober.join()
    assert sum(isinstance(result, StoreUnavailable) for result in results) == 8
    assert results.count("answer") == 1
    assert server.calls == 2  # the failure, then the probe: none of the eight
    assert not breaker.is_open


# -- the down_for option ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"), [(0.5, 0.5), ("0.25", 0.25), (2, 2.0), (" 1 ", 1.0), (60, 60.0)]
)
def test_down_for_takes_seconds(value: object, seconds: float) -> None:
    assert to_down_for(value) == seconds


@pytest.mark.parametrize("value", [0, -1, 61, "abc", "", None, True, float("nan"), [1]])
def test_down_for_refuses_anything_else(value: object) -> None:
    with pytest.raises(ValueError, match=r"down_for: expected a number of seconds.*got"):
        to_down_for(value)


def test_down_for_is_taken_out_of_the_options() -> None:
    options = {"down_for": "2", "host": "h"}
    assert pop_down_for(options) == 2.0
    assert options == {"host": "h"}
    assert pop_down_for({}) == DEFAULT_DOWN_FOR
