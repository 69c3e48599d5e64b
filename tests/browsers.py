"""The application of the fault tests, and browsers that remember what it confirmed.

One application uses every component on one store - sessions, the cache, the rate
limiter and the Perl session reader.  Each ``Client`` is a browser with its own
cookies that keeps the last count the application confirmed and the highest it
attempted, and every response's status and time, so that the fault tests
(``test_faults.py``, ``test_failover.py``) can assert with numbers: no 500, a
bounded wait, nothing confirmed lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyramid.config import Configurator
from webtest import TestApp

import apps
from apps import json_view

SECRET = "a-fault-injection-secret-of-some-length"
#: the most one request may take while its store hangs: one 1 s timeout, and margin
ONE_TIMEOUT_AT_MOST = 2.5
PERL_ID = "0123456789abcdef0123456789abcdef"


def make_app(url: str) -> TestApp:
    settings = {
        "kvs.session.url": url,
        "kvs.session.secret": SECRET,
        "kvs.cache.url": url,
        "kvs.ratelimit": '{"window": 60, "limit": 100000}',
        "kvs.perlsess.url": url,
        "kvs.perlsess.cookie_name": "CGISESSID",
    }
    return apps.make_app(settings, views)


def views(config: Configurator) -> None:
    def route(name: str, view: Callable[[Any], Any]) -> None:
        json_view(config, name, view)

    def incr(request: Any) -> dict[str, Any]:
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    route("incr", incr)
    route("read", lambda request: {"n": request.session.get("n")})
    route("cache_put", lambda request: request.cache.set("shared", 1) or {})
    route("cache_get", lambda request: {"value": request.cache.get("shared")})
    route("perl", lambda request: {"user": request.perlsess.get("user")})
    route("plain", lambda request: {})


KINDS = ("incr", "read", "cache_put", "cache_get", "perl", "plain")
#: the views that need the session: an outage answers 503 there (on_unavailable)
SESSION_KINDS = {"incr", "read"}


@dataclass
class Client:
    """One browser: its own cookies, and what the application confirmed to it."""

    app: TestApp
    #: the last count a 200 confirmed, and the highest count ever attempted
    confirmed: int = 0
    attempted: int = 0
    responses: list[tuple[str, int, float]] = field(default_factory=list)

    def request(self, kind: str) -> Any:
        if kind == "incr":
            self.attempted += 1
        started = time.monotonic()
        response = self.app.get(f"/{kind}", expect_errors=True)
        elapsed = time.monotonic() - started
        self.responses.append((kind, response.status_int, elapsed))
        if kind == "incr" and response.status_int == 200:
            self.confirmed = response.json["n"]
        return response


def clients_of(app: TestApp, count: int) -> list[Client]:
    clients = []
    for _ in range(count):
        own = TestApp(app.app)
        own.set_cookie("CGISESSID", PERL_ID)
        client = Client(own)
        assert client.request("incr").status_int == 200
        clients.append(client)
    return clients


def one_round(clients: list[Client]) -> None:
    for client in clients:
        for kind in KINDS:
            client.request(kind)


def assert_no_500_and_bounded(clients: list[Client]) -> None:
    for client in clients:
        for kind, status, elapsed in client.responses:
            assert status in (200, 503), (kind, status)
            assert status == 200 or kind in SESSION_KINDS, (kind, status)
            assert elapsed < ONE_TIMEOUT_AT_MOST, (kind, elapsed)


def time_until_served(client: Client) -> float:
    """Seconds until a session read answers 200 again (polled every 20 ms)."""
    started = time.monotonic()
    while client.request("read").status_int != 200:
        assert time.monotonic() - started < 10, "the application never came back"
        time.sleep(0.02)
    return time.monotonic() - started


def assert_nothing_confirmed_lost(clients: list[Client]) -> None:
    for client in clients:
        stored = client.request("read").json["n"]
        # a write whose reply never came may have been applied: never fewer than
        # confirmed, never more than attempted
        assert client.confirmed <= stored <= client.attempted
