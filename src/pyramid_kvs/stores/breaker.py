"""The circuit breaker: a server that just failed is not asked again for a moment.

A request makes several store operations - load the session, check the rate limit,
read the cache - and against a frozen or unreachable server each would wait for its
own timeout.  The breaker makes the first failure count for everyone: once a call
fails to reach the server, the breaker is *open* for ``down_for`` seconds and every
call - from this request and from every other thread sharing the client - fails at
once with ``StoreUnavailable``, without touching a socket.  A request therefore
waits for at most one timeout per server, however many operations it makes.

When ``down_for`` has passed, one call is let through as a *probe* while the others
keep failing fast: its success closes the breaker, its failure opens it again.  A
server that comes back is in service at most ``down_for`` seconds later.

Only failures to reach the server (``StoreUnavailable``: refused, dropped, timed
out) open the breaker.  A server that answers with an error (READONLY after a
failover, OOM) is alive: its errors are ``StoreError`` and pass through.

One breaker guards one server, shared by every prefixed view of its client; the
clock is injectable so that the tests walk through time without sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

from .base import StoreError, StoreUnavailable

T = TypeVar("T")

log = logging.getLogger(__name__)

#: the store option setting how long a failed server is left alone
DOWN_FOR_OPTION = "down_for"
#: seconds a server that failed is left alone before a probe, unless configured
DEFAULT_DOWN_FOR = 0.5
#: the longest ``down_for`` accepted: longer would keep a recovered server unused
MAX_DOWN_FOR = 60.0


def to_down_for(value: Any) -> float:
    """Validate a ``down_for`` value: seconds, more than 0 and at most 60.

    Strings are accepted because URL query parameters arrive as text.
    """
    expected = (
        f"{DOWN_FOR_OPTION}: expected a number of seconds, more than 0 and at most "
        f"{MAX_DOWN_FOR:g} (e.g. {DEFAULT_DOWN_FOR}), got {value!r}"
    )
    if isinstance(value, bool):
        raise ValueError(expected)
    try:
        seconds = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(expected) from None
    if not 0 < seconds <= MAX_DOWN_FOR:  # also refuses nan
        raise ValueError(expected)
    return seconds


def to_timeout(name: str, value: Any) -> float:
    """Validate the client timeout option *name*: a positive number of seconds.

    The breaker's promise - one timeout per request at most - needs each call to
    end: an unbounded timeout (``None``) would let a hung server hang requests, so
    it is refused along with anything that is not a number.
    """
    if not isinstance(value, bool):
        try:
            seconds = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            pass
        else:
            if 0 < seconds < float("inf"):
                return seconds
    raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")


def pop_down_for(options: MutableMapping[str, Any]) -> float:
    """Take ``down_for`` out of a store's *options* (the client must not see it)."""
    if DOWN_FOR_OPTION not in options:
        return DEFAULT_DOWN_FOR
    return to_down_for(options.pop(DOWN_FOR_OPTION))


class CircuitBreaker:
    """Fails calls fast for ``down_for`` seconds after one could not reach the server.

    Thread-safe: one breaker is shared by every thread using its client.  While
    closed - the normal case - a call costs one attribute read before and none after.
    """

    def __init__(
        self,
        name: str,
        down_for: float = DEFAULT_DOWN_FOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.down_for = to_down_for(down_for)
        self._clock = clock
        self._lock = threading.Lock()
        #: None while closed; else the time from which a probe may be sent
        self._down_until: float | None = None
        self._probing = False
        self._cause = ""

    @property
    def is_open(self) -> bool:
        """Whether calls currently fail fast (a probe may be under way)."""
        return self._down_until is not None

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)``, unless the server is known to be down.

        *function* must raise ``StoreUnavailable`` when it cannot reach the
        server (the store's error translation does that).
        """
        probe = self._admit()
        try:
            result = function(*args, **kwargs)
        except StoreUnavailable as exc:
            self._open(exc, probe)
            raise
        except StoreError:
            if probe:  # an error reply: the server is back, answering
                self._close()
            raise
        except BaseException:
            if probe:  # a bug or an interrupt tells nothing: let the next call probe
                self._end_probe()
            raise
        if probe:
            self._close()
        return result

    def _admit(self) -> bool:
        """Whether the call goes ahead as a probe; StoreUnavailable if it may not go."""
        if self._down_until is None:
            return False
        with self._lock:
            if self._down_until is None:
                return False
            now = self._clock()
            if self._probing or now < self._down_until:
                raise StoreUnavailable(
                    f"{self.name}: not tried, down since a failure less than "
                    f"{self.down_for:g} s ago ({self._cause})"
                )
            self._probing = True
            return True

    def _open(self, exc: StoreUnavailable, probe: bool) -> None:
        with self._lock:
            was_closed = self._down_until is None
            self._down_until = self._clock() + self.down_for
            self._cause = str(exc)
            if probe:
                self._probing = False
        if was_closed:
            log.warning(
                "%s is unreachable (%s): its calls fail at once for %g s, then one tries again",
                self.name,
                exc,
                self.down_for,
            )

    def _close(self) -> None:
        with self._lock:
            self._down_until = None
            self._probing = False
            self._cause = ""
        log.warning("%s answers again", self.name)

    def _end_probe(self) -> None:
        with self._lock:
            self._probing = False
