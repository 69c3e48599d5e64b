"""The rate limiter through Pyramid and WebTest, on real Redis, memcached and memory."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import pytest
import redis
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.request import Request
from webtest import TestApp

import apps
from apps import json_view
from pyramid_kvs.components import get_components
from pyramid_kvs.ratelimit.cas import GCRA_CAS_ATTEMPTS
from pyramid_kvs.ratelimit.limits import Limit
from pyramid_kvs.ratelimit.settings import parse_ratelimit
from pyramid_kvs.stores import Store, register
from pyramid_kvs.stores.base import CompareAndSwapStore, StoredRecord
from pyramid_kvs.stores.memcached import MemcachedStore
from pyramid_kvs.stores.memory import MemoryStore
from roundtrips import count_round_trips
from servers import unused_port

ALGORITHMS = ("fixed", "sliding", "gcra")
IP = {"REMOTE_ADDR": "192.0.2.1"}


def home(config: Configurator) -> None:
    json_view(config, "home", lambda request: {"ok": True}, "/")


def make_app(
    settings: dict[str, Any], setup: Callable[[Configurator], None] | None = None
) -> TestApp:
    setups = (home,) if setup is None else (home, setup)
    return apps.make_app(settings, *setups, extra_environ=IP)


def limited(url: str, limits: str, **extra: str) -> dict[str, str]:
    return {"kvs.ratelimit.url": url, "kvs.ratelimit.limits": limits, **extra}


# -- settings ---------------------------------------------------------------------------


def test_the_original_form_and_its_defaults() -> None:
    parsed = parse_ratelimit({"kvs.ratelimit": '{"window": 1, "limit": 15}'})
    assert parsed is not None
    assert parsed.limits == (Limit(15, 1),)
    assert (parsed.algorithm, parsed.holder, parsed.headers, parsed.on_error) == (
        "fixed", "session", "both", "allow",
    )  # fmt: skip
    assert parsed.store.backend == "memory" and parsed.key_prefix == "ratelimit::"
    assert parse_ratelimit({"kvs.ratelimit": "{}"}).limits == (Limit(15, 1),)  # type: ignore[union-attr]
    assert parse_ratelimit({}) is None


def test_flat_keys_win_and_limits_win_over_window_and_limit() -> None:
    parsed = parse_ratelimit(
        {
            "kvs.ratelimit": '{"window": 60, "limit": 5, "algorithm": "gcra"}',
            "kvs.ratelimit.algorithm": "sliding",
            "kvs.ratelimit.limits": "15/second;1000/hour",
        }
    )
    assert parsed is not None and parsed.algorithm == "sliding"
    assert parsed.limits == (Limit(15, 1), Limit(1000, 3600))


def test_the_session_store_is_used_unless_the_limiter_has_its_own() -> None:
    session = {"kvs.session": '{"kvs": "redis", "kvs_kwargs": {"port": 6390}}'}
    inherited = parse_ratelimit({**session, "kvs.ratelimit.limit": "3"})
    assert inherited is not None and inherited.store.backend == "redis"
    assert dict(inherited.store.options) == {"port": 6390}
    own = parse_ratelimit({**session, "kvs.ratelimit.url": "memcached://h:1"})
    assert own is not None and own.store.backend == "memcached"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("limits", "15/fortnight", "kvs.ratelimit.limits: expected"),
        ("limit", "0", "kvs.ratelimit.limit: expected a positive whole number"),
        ("window", "soon", "kvs.ratelimit.window: expected a positive whole number"),
        ("algorithm", "leaky", "kvs.ratelimit.algorithm: expected one of: fixed, sliding, gcra"),
        ("holder", "cookie", "kvs.ratelimit.holder: expected session, ip, userid, header:NAME"),
        ("holder", "header:", "kvs.ratelimit.holder: expected"),
        ("headers", "all", "kvs.ratelimit.headers: expected one of: both, legacy, ietf, none"),
        ("on_error", "retry", "kvs.ratelimit.on_error: expected one of: allow, deny"),
        ("trusted_proxies", "-1", "kvs.ratelimit.trusted_proxies: expected a whole number"),
        ("lmits", "1/second", "kvs.ratelimit: unknown setting(s) lmits"),
    ],
)
def test_bad_settings_stop_the_application(key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        make_app({f"kvs.ratelimit.{key}": value})


def test_a_key_function_that_does_not_import_stops_the_application() -> None:
    with pytest.raises(ConfigurationError, match=r"kvs\.ratelimit\.holder: cannot import"):
        make_app({"kvs.ratelimit.holder": "no_such_module.holder"})


def test_the_view_option_is_validated_and_needs_the_limiter() -> None:
    def bad_option(config: Configurator) -> None:
        config.add_route("login", "/login")
        config.add_view(lambda r: {}, route_name="login", renderer="json", ratelimit="5/eon")

    with pytest.raises(ConfigurationError, match="ratelimit view option"):
        make_app({"kvs.ratelimit.limit": "5"}, bad_option)

    def option(config: Configurator) -> None:
        config.add_route("login", "/login")
        config.add_view(lambda r: {}, route_name="login", renderer="json", ratelimit="5/day")

    with pytest.raises(ConfigurationError, match=r"needs kvs\.ratelimit settings"):
        make_app({}, option)


def test_without_settings_nothing_is_limited() -> None:
    app = make_app({})
    response = app.get("/")
    assert "X-RateLimit-Limit" not in response.headers
    assert get_components(app.app.registry).ratelimiter is None


# -- behaviour on every backend -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_headers_then_429_with_retry_after(backend_url: str, algorithm: str) -> None:
    app = make_app(limited(backend_url, "3/day", **{"kvs.ratelimit.algorithm": algorithm}))
    remaining = []
    for _ in range(3):
        response = app.get("/")
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["RateLimit-Policy"] == '"default";q=3;w=86400'
        assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= 86400
        remaining.append(response.headers["X-RateLimit-Remaining"])
        assert response.headers["RateLimit"].startswith(f'"default";r={remaining[-1]};t=')
    assert remaining == ["2", "1", "0"]
    refused = app.get("/", status=429)
    # the sliding window may wait into the next window
    assert 1 <= int(refused.headers["Retry-After"]) <= 86400 * (2 if algorithm == "sliding" else 1)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) >= int(refused.headers["Retry-After"])
    assert app.get("/", status=429, extra_environ={"REMOTE_ADDR": "192.0.2.1"})
    assert app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.2"}).status_int == 200


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_several_limits_all_or_nothing(backend_url: str, algorithm: str) -> None:
    app = make_app(limited(backend_url, "2/hour;3/day", **{"kvs.ratelimit.algorithm": algorithm}))
    app.get("/"), app.get("/")
    refused = app.get("/", status=429)
    # the hour was not charged for the refused request: one left of 3
    assert '"default-86400s";r=1;' in refused.headers["RateLimit"]
    assert '"default-3600s";r=0;' in refused.headers["RateLimit"]
    assert refused.headers["RateLimit-Policy"] == (
        '"default-3600s";q=2;w=3600, "default-86400s";q=3;w=86400'
    )


def test_the_window_resets_and_retry_after_is_never_early(backend_url: str) -> None:
    app = make_app(limited(backend_url, "2/second"))
    # Requests until one is refused (a new second may start in between).
    refused = next(r for r in (app.get("/", status="*") for _ in range(10)) if r.status_int == 429)
    assert refused.headers["Retry-After"] == "1"
    time.sleep(int(refused.headers["Retry-After"]))
    assert app.get("/").status_int == 200


def test_gcra_refills_on_the_store_clock(backend_url: str) -> None:
    app = make_app(limited(backend_url, "2/second", **{"kvs.ratelimit.algorithm": "gcra"}))
    app.get("/"), app.get("/")
    refused = app.get("/", status=429)
    assert refused.headers["Retry-After"] == "1"
    time.sleep(0.55)  # one request every 0.5 s
    assert app.get("/").headers["X-RateLimit-Remaining"] == "0"
    app.get("/", status=429)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_peek_reads_a_holders_state_without_counting(backend_url: str, algorithm: str) -> None:
    config = apps.committed(
        limited(backend_url, "3/hour;100/day", **{"kvs.ratelimit.algorithm": algorithm})
    )
    limiter = get_components(config.registry).ratelimiter
    assert limiter is not None
    request = Request.blank("/", environ=IP)
    holder = limiter.holder_of(request)
    fresh = limiter.peek(holder)
    assert fresh.allowed and [state.remaining for state in fresh.states] == [3, 100]
    assert fresh.names == ("default-3600s", "default-86400s")
    limiter.check(request), limiter.check(request)
    for _ in range(2):  # looking twice counts nothing
        seen = limiter.peek(holder)
        assert seen.allowed and [state.remaining for state in seen.states] == [1, 98]
    assert limiter.check(request).states[0].remaining == 0  # the third request passes
    full = limiter.peek(holder)
    assert not full.allowed and full.retry_after >= 1
    assert [state.allowed for state in full.states] == [False, True]
    assert full.states[0].remaining == 0
    assert limiter.peek("ip:192.0.2.99").states[0].remaining == 3  # another holder


def test_peek_needs_limits() -> None:
    config = apps.committed({"kvs.ratelimit.limits": "none"})
    limiter = get_components(config.registry).ratelimiter
    assert limiter is not None
    with pytest.raises(ValueError, match="no limit"):
        limiter.peek("ip:192.0.2.1")


def passes_under_concurrency(app: TestApp) -> list[bool]:
    """Whether each of 80 checks of one holder passed, from 8 threads at once."""
    limiter = get_components(app.app.registry).ratelimiter
    assert limiter is not None
    passed = []
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(10):
            batch = limiter.store.batch()
            check = limiter.queue(batch, "one-holder")
            batch.execute()
            passed.append(check.outcome().allowed)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(passed) == 80
    return passed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_exactly_limit_requests_pass_under_concurrency(backend_url: str, algorithm: str) -> None:
    app = make_app(limited(backend_url, "20/day", **{"kvs.ratelimit.algorithm": algorithm}))
    assert passes_under_concurrency(app).count(True) == 20


# -- engines chosen by what the store can do ----------------------------------------------


class ContractOnly(Store):
    """A custom store with the contract and no capability: a memory store's data.

    It has no client and no wire keys, so an engine that reached for them would fail.
    """

    name = "contract-only"

    def __init__(self, key_prefix: str = "") -> None:
        super().__init__(key_prefix)
        self.data = MemoryStore()

    def get(self, key: str) -> bytes | None:
        return self.data.get(self.full_key(key))

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self.data.set(self.full_key(key), value, ttl)

    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        return self.data.add(self.full_key(key), value, ttl)

    def delete(self, key: str) -> bool:
        return self.data.delete(self.full_key(key))

    def touch(self, key: str, ttl: int | None) -> bool:
        return self.data.touch(self.full_key(key), ttl)

    def get_and_touch(self, key: str, ttl: int | None) -> bytes | None:
        return self.data.get_and_touch(self.full_key(key), ttl)

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        return self.data.incr(self.full_key(key), amount, ttl)

    def load_record(self, key: str, ttl: int | None) -> StoredRecord | None:
        return self.data.load_record(self.full_key(key), ttl)

    def update_record(
        self,
        key: str,
        changed: Mapping[str, bytes],
        removed: Collection[str],
        ttl: int | None,
        base: StoredRecord | None = None,
    ) -> None:
        self.data.update_record(self.full_key(key), changed, removed, ttl, base)

    def replace_record(self, key: str, fields: Mapping[str, bytes], ttl: int | None) -> None:
        self.data.replace_record(self.full_key(key), fields, ttl)


class CompareAndSwapOnly(ContractOnly, CompareAndSwapStore):
    """The same store, offering compare-and-swap: its only capability.

    The token is the value read, compared under the data's lock: enough for a rate
    limit, whose values only move forward.
    """

    name = "cas-only"

    def __init__(self, key_prefix: str = "") -> None:
        super().__init__(key_prefix)
        self.swaps = 0

    def gets(self, key: str) -> tuple[bytes | None, object]:
        value = self.get(key)
        return value, value

    def cas(self, key: str, value: bytes, token: object, ttl: int | None = None) -> bool:
        with self.data.atomically():
            if token is None or self.get(key) != token:
                return False
            self.set(key, value, ttl)
            self.swaps += 1
            return True


class RenamedMemcached(MemcachedStore):
    """memcached under another name: the engine does not go by names."""

    name = "elasticache"


class NeverSwaps(CompareAndSwapOnly):
    """A store where another client always wins the race."""

    name = "never-swaps"

    def cas(self, key: str, value: bytes, token: object, ttl: int | None = None) -> bool:
        self.swaps += 1  # here: the attempts
        return False


register("contract-only", lambda options: ContractOnly())
register("cas-only", lambda options: CompareAndSwapOnly())
register("never-swaps", lambda options: NeverSwaps())
register("elasticache", RenamedMemcached.from_options)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_custom_store_with_compare_and_swap_rate_limits(algorithm: str) -> None:
    settings = {"kvs.ratelimit.kvs": "cas-only", "kvs.ratelimit.algorithm": algorithm}
    app = make_app({**settings, "kvs.ratelimit.limits": "3/day"})
    limiter = get_components(app.app.registry).ratelimiter
    assert limiter is not None and isinstance(limiter.store, CompareAndSwapOnly)
    remaining = [app.get("/").headers["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    refused = app.get("/", status=429)
    assert int(refused.headers["Retry-After"]) > 0
    assert limiter.store.swaps == (2 if algorithm == "gcra" else 0)  # the first one adds

    app = make_app({**settings, "kvs.ratelimit.limits": "20/day"})
    assert passes_under_concurrency(app).count(True) == 20


def test_a_compare_and_swap_that_never_wins_gives_up_as_on_error_says() -> None:
    app = make_app(
        {
            "kvs.ratelimit.kvs": "never-swaps",
            "kvs.ratelimit.algorithm": "gcra",
            "kvs.ratelimit.limits": "3/day",
            "kvs.ratelimit.on_error": "deny",
        }
    )
    app.get("/")  # the first check adds its value: no race to lose
    app.get("/", status=503)
    limiter = get_components(app.app.registry).ratelimiter
    assert limiter is not None and isinstance(limiter.store, NeverSwaps)
    assert limiter.store.swaps == GCRA_CAS_ATTEMPTS


def test_memcached_under_another_name_rate_limits_as_memcached(memcached_address: str) -> None:
    app = make_app(
        {
            "kvs.ratelimit": json.dumps(
                {"kvs": "elasticache", "kvs_kwargs": {"servers": [memcached_address]}}
            ),
            "kvs.ratelimit.limits": "2/day",
        }
    )
    app.get("/")
    with count_round_trips() as trips:
        app.get("/")
    assert trips.memcached == 1  # as on memcached: one incr
    app.get("/", status=429)


def test_a_store_that_cannot_rate_limit_stops_the_application() -> None:
    message = (
        "kvs.ratelimit: the contract-only store cannot rate limit; use a memory, redis "
        "or memcached store, or one that offers scripts, compare-and-swap or a local lock"
    )
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        make_app({"kvs.ratelimit.kvs": "contract-only", "kvs.ratelimit.limits": "3/day"})


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "memcached_trips"), [("fixed", 1), ("sliding", 2), ("gcra", 2)]
)
def test_round_trips_per_request(backend: str, backend_url: str, algorithm: str,
                                 memcached_trips: int) -> None:  # fmt: skip
    app = make_app(limited(backend_url, "5/day", **{"kvs.ratelimit.algorithm": algorithm}))
    app.get("/")  # creates the window's counter on memcached
    with count_round_trips() as trips:
        app.get("/")
    expected = {"memory": 0, "redis": 1, "memcached": memcached_trips}[backend]
    assert trips.total == expected


def test_on_redis_the_check_shares_a_round_trip_with_other_work(redis_url: str) -> None:
    app = make_app(limited(redis_url, "5/day"))
    limiter = get_components(app.app.registry).ratelimiter
    assert limiter is not None
    limiter.store.set("session-record", b"loaded")
    with count_round_trips() as trips:
        batch = limiter.store.batch()
        check = limiter.queue(batch, "holder")
        other = batch.get("session-record")  # what the session prefetch will queue
        batch.execute()
        outcome = check.outcome()
    assert trips.redis == 1
    assert outcome.allowed and outcome.states[0].remaining == 4
    assert other.value == b"loaded"


def test_the_limiter_joins_the_session_store_when_it_has_none(redis_url: str) -> None:
    app = make_app({"kvs.session.url": redis_url, "kvs.ratelimit.limits": "2/day"})
    limiter = get_components(app.app.registry).ratelimiter
    assert limiter is not None and limiter.store.name == "redis"
    app.get("/"), app.get("/")
    app.get("/", status=429)
    client = redis.Redis.from_url(redis_url)  # the counters live in the session's Redis
    assert [key.decode() for key in client.keys("ratelimit::*")] == [
        "ratelimit::{ip:192.0.2.1}:default:f:2/86400"
    ]
    client.close()


# -- holders -----------------------------------------------------------------------------------


def one_per_day(**extra: str) -> dict[str, str]:
    return {"kvs.ratelimit.limits": "1/day", **extra}


def test_without_sessions_the_session_key_is_the_client_address() -> None:
    app = make_app(one_per_day())
    app.set_cookie("session_id", "A" * 43)  # no session component to vouch for it
    app.get("/")
    app.get("/", status=429)
    app.set_cookie("session_id", "B" * 43)
    app.get("/", status=429)  # inventing cookies does not buy a new quota
    app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.9"})


def test_session_key_reads_the_id_the_way_the_session_does() -> None:
    settings = one_per_day(
        **{"kvs.session": json.dumps({"key_name": "sid"}), "kvs.session.secret": "s" * 32}
    )
    app = make_app(settings)
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    app.set_cookie("sid", sessions.cookie_value("A" * 43))
    app.get("/")
    app.get("/", status=429)
    app.set_cookie("sid", sessions.cookie_value("B" * 43))
    app.get("/")  # another session, same address: its own quota
    app.set_cookie("sid", "A" * 43 + ".forged-signature")
    app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.7"})  # a forgery counts by address
    app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.7"}, status=429)


def test_header_sessions_are_counted_by_token_whichever_header_carries_it() -> None:
    app = make_app(
        one_per_day(**{"kvs.session.session_type": "header", "kvs.session.key_name": "X-A, X-B"})
    )
    app.get("/", headers={"X-B": "one"})  # two API clients behind one address
    app.get("/", headers={"X-A": "two"})
    app.get("/", headers={"x-a": "one"}, status=429)
    app.get("/", headers={"X-B": "two"}, status=429)


def test_a_cookie_header_that_is_not_utf8_is_no_session_id() -> None:
    app = make_app(one_per_day(**{"kvs.session.secret": "s" * 32}))
    for address, name in (("192.0.2.5", "session_id"), ("192.0.2.6", "a")):
        environ = {"HTTP_COOKIE": f'{name}="\xff"', "REMOTE_ADDR": address}
        app.get("/", extra_environ=environ)
        app.get("/", extra_environ=environ, status=429)  # counted by address


def test_without_a_session_id_the_client_address_is_the_holder() -> None:
    app = make_app(one_per_day())
    app.get("/")
    app.get("/", status=429)
    app.get("/", extra_environ={"REMOTE_ADDR": "192.0.2.9"})


def test_ip_key_trusts_forwarded_for_only_behind_configured_proxies() -> None:
    untrusted = make_app(one_per_day(**{"kvs.ratelimit.holder": "ip"}))
    untrusted.get("/", headers={"X-Forwarded-For": "198.51.100.1"})
    untrusted.get("/", headers={"X-Forwarded-For": "198.51.100.2"}, status=429)
    proxied = make_app(one_per_day(**{"kvs.ratelimit.holder": "ip",
                                         "kvs.ratelimit.trusted_proxies": "1"}))  # fmt: skip
    proxied.get("/", headers={"X-Forwarded-For": "198.51.100.1"})
    proxied.get("/", headers={"X-Forwarded-For": "198.51.100.2"})
    proxied.get("/", headers={"X-Forwarded-For": "198.51.100.2"}, status=429)
    # a client cannot forge its way out: only the entry the proxy wrote counts
    proxied.get("/", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.2"}, status=429)


class HeaderIdentity:
    """A security policy whose user is named by the X-User header."""

    def identity(self, request: Request) -> str | None:
        return request.headers.get("X-User")

    def authenticated_userid(self, request: Request) -> str | None:
        return self.identity(request)

    def permits(self, request: Request, context: Any, permission: str) -> bool:
        return True


def test_userid_key() -> None:
    app = make_app(one_per_day(**{"kvs.ratelimit.holder": "userid"}),
                   lambda config: config.set_security_policy(HeaderIdentity()))  # fmt: skip
    app.get("/", headers={"X-User": "ada"})
    app.get("/", headers={"X-User": "ada"}, status=429)
    app.get("/", headers={"X-User": "bob"})
    app.get("/")  # anonymous: by address
    app.get("/", status=429)


def test_header_key() -> None:
    app = make_app(one_per_day(**{"kvs.ratelimit.holder": "header:X-Api-Key"}))
    app.get("/", headers={"X-Api-Key": "k1"})
    app.get("/", headers={"X-Api-Key": "k1"}, status=429)
    app.get("/", headers={"X-Api-Key": "k2"})


def holder_from_query(request: Request) -> str | None:
    return request.GET.get("tenant")


def test_callable_key() -> None:
    app = make_app(one_per_day(**{"kvs.ratelimit.holder": "test_ratelimit.holder_from_query"}))
    app.get("/?tenant=a")
    app.get("/?tenant=a", status=429)
    app.get("/?tenant=b")


# -- per-view limits --------------------------------------------------------------------------


def views(config: Configurator) -> None:
    config.add_route("login", "/login")
    config.add_view(lambda r: {"login": 1}, route_name="login", renderer="json",
                    ratelimit="1/day")  # fmt: skip
    config.add_route("health", "/health")
    config.add_view(lambda r: {"health": 1}, route_name="health", renderer="json",
                    ratelimit=False)  # fmt: skip
    # one route, two views that disagree: the tween cannot know which will run
    config.add_route("mixed", "/mixed")
    config.add_view(lambda r: {"get": 1}, route_name="mixed", renderer="json",
                    request_method="GET", ratelimit="1/day")  # fmt: skip
    config.add_view(lambda r: {"post": 1}, route_name="mixed", renderer="json",
                    request_method="POST")  # fmt: skip


def test_a_view_limit_replaces_the_default_and_counts_apart() -> None:
    app = make_app({"kvs.ratelimit.limits": "3/day"}, views)
    login = app.get("/login")
    assert login.headers["RateLimit-Policy"] == '"view";q=1;w=86400'
    app.get("/login", status=429)
    assert app.get("/").headers["X-RateLimit-Remaining"] == "2"


def test_an_exempt_view_is_never_limited_nor_counted() -> None:
    app = make_app({"kvs.ratelimit.limits": "1/day"}, views)
    for _ in range(3):
        response = app.get("/health")
        assert "X-RateLimit-Limit" not in response.headers
    assert app.get("/").headers["X-RateLimit-Remaining"] == "0"


def test_views_of_one_route_with_different_limits(redis_url: str) -> None:
    app = make_app(limited(redis_url, "5/day"), views)
    get_components(app.app.registry).ratelimiter.store.ping()  # type: ignore[union-attr]  # connects
    with count_round_trips() as trips:
        response = app.get("/mixed")
    assert trips.redis == 2  # the default limit in the tween, the view's in the deriver
    assert response.headers["RateLimit-Policy"] == '"view";q=1;w=86400'
    app.get("/mixed", status=429)
    posted = app.post("/mixed")
    assert posted.headers["RateLimit-Policy"] == '"default";q=5;w=86400'
    assert posted.headers["X-RateLimit-Remaining"] == "2"


def test_only_views_with_their_own_limits_when_limits_is_none(redis_url: str) -> None:
    app = make_app(limited(redis_url, "none"), views)
    for _ in range(3):
        assert "X-RateLimit-Limit" not in app.get("/").headers
    app.get("/login")
    app.get("/login", status=429)


def test_view_option_through_view_config_and_scan() -> None:
    config = apps.configure({"kvs.ratelimit.limits": "10/day"})
    config.add_route("scanned", "/scanned")
    config.scan("ratelimit_views")
    app = TestApp(config.make_wsgi_app(), extra_environ=IP)
    assert app.get("/scanned").json == {"scanned": True}
    app.get("/scanned", status=429)


# -- outages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "memcached"])
def test_an_unreachable_store_allows_and_logs_by_default(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{scheme}://127.0.0.1:{unused_port()}" + ("/0" if scheme == "redis" else "")
    app = make_app(limited(url, "1/day"))
    with caplog.at_level(logging.WARNING, logger="pyramid_kvs.ratelimit"):
        for _ in range(2):
            response = app.get("/")
            assert "X-RateLimit-Limit" not in response.headers
    assert "request allowed unchecked" in caplog.text


@pytest.mark.parametrize("scheme", ["redis", "memcached"])
def test_an_unreachable_store_denies_with_503_when_configured(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{unused_port()}" + ("/0" if scheme == "redis" else "")
    app = make_app(limited(url, "1/day", **{"kvs.ratelimit.on_error": "deny"}))
    app.get("/", status=503)


# -- header styles and request.ratelimit ---------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "present", "absent"),
    [
        ("legacy", "X-RateLimit-Remaining", "RateLimit"),
        ("ietf", "RateLimit", "X-RateLimit-Remaining"),
        ("none", None, "RateLimit"),
    ],
)
def test_header_styles(style: str, present: str | None, absent: str) -> None:
    app = make_app({"kvs.ratelimit.limits": "1/day", "kvs.ratelimit.headers": style})
    response = app.get("/")
    if present:
        assert present in response.headers
    assert absent not in response.headers
    refused = app.get("/", status=429)
    assert refused.headers["Retry-After"]  # always, whatever the style


def test_request_ratelimit_exposes_the_outcome() -> None:
    def show(config: Configurator) -> None:
        config.add_route("show", "/show")
        config.add_view(
            lambda request: {"remaining": request.ratelimit.tightest.remaining},
            route_name="show",
            renderer="json",
        )

    app = make_app({"kvs.ratelimit.limits": "5/day"}, show)
    assert app.get("/show").json == {"remaining": 4}
    assert app.get("/show").json == {"remaining": 3}


def test_error_responses_carry_the_headers_too() -> None:
    app = make_app({"kvs.ratelimit.limits": "5/day"})
    missing = app.get("/nowhere", status=404)
    assert missing.headers["X-RateLimit-Remaining"] == "4"


@pytest.mark.parametrize(
    ("settings", "vary"),
    [
        ({"kvs.session.secret": "s" * 32}, "Cookie"),
        ({"kvs.session.session_type": "header", "kvs.session.key_name": "X-A X-B"}, "X-A, X-B"),
        ({"kvs.ratelimit.holder": "header:X-Api-Key"}, "X-Api-Key"),
        ({"kvs.ratelimit.holder": "ip"}, None),
    ],
)
def test_responses_vary_on_what_the_holder_is_read_from(
    settings: dict[str, str], vary: str | None
) -> None:
    app = make_app({"kvs.ratelimit.limits": "1/day", **settings})
    for status in (200, 429):
        response = app.get("/", status=status)
        assert response.headers.get("Vary") == vary


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("backend", ["memory", "redis"])
@pytest.mark.parametrize("garbage", [b"not a number", b"nan nan nan", b"inf", b"-inf", b"nan"])
def test_a_key_holding_something_else_is_a_store_error(
    backend: str, backend_url: str, algorithm: str, garbage: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    settings = limited(backend_url, "1/day", **{"kvs.ratelimit.algorithm": algorithm})
    apps = {policy: make_app({**settings, "kvs.ratelimit.on_error": policy})
            for policy in ("allow", "deny")}  # fmt: skip
    for policy, app in apps.items():
        app.extra_environ = {"REMOTE_ADDR": f"192.0.2.{len(policy)}"}  # a holder each
        app.get("/")
        limiter = get_components(app.app.registry).ratelimiter
        assert limiter is not None
        (key,) = list(limiter.store.scan(f"{{ip:192.0.2.{len(policy)}}}:*"))
        if backend == "redis":
            client = redis.Redis.from_url(backend_url)
            client.set("ratelimit::" + key, garbage)
            client.close()
        else:
            limiter.store.set(key, garbage, 60)
        with caplog.at_level(logging.WARNING, logger="pyramid_kvs.ratelimit"):
            response = app.get("/", status=200 if policy == "allow" else 503)
        assert "X-RateLimit-Limit" not in response.headers
        assert ("allowed unchecked" if policy == "allow" else "request denied") in caplog.text


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("garbage", [b"not a number", b"inf", b"nan"])
def test_a_memcached_key_holding_something_else_is_a_store_error(
    memcached_address: str, algorithm: str, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    from pymemcache.client.base import Client

    url = "memcached://" + memcached_address
    settings = limited(url, "1/day", **{"kvs.ratelimit.algorithm": algorithm})
    client = Client(memcached_address)
    for policy in ("allow", "deny"):
        app = make_app({**settings, "kvs.ratelimit.on_error": policy})
        address = f"192.0.2.{len(policy)}"
        app.extra_environ = {"REMOTE_ADDR": address}
        base = f"ratelimit::{{ip:{address}}}:default:{algorithm[0]}"
        index = int(time.time() // 86400)
        key = base if algorithm == "gcra" else f"{base}:1/86400:{index}"
        client.set(key, garbage, 60, noreply=False)
        if algorithm == "sliding":
            client.set(f"{base}:1/86400:{index - 1}", garbage, 60, noreply=False)
        with caplog.at_level(logging.WARNING, logger="pyramid_kvs.ratelimit"):
            response = app.get("/", status=200 if policy == "allow" else 503)
        assert "X-RateLimit-Limit" not in response.headers
        assert ("allowed unchecked" if policy == "allow" else "request denied") in caplog.text
    client.close()
