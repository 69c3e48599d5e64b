"""What ``make bench`` measures: every row of the issue "Performance", and more.

A scenario names the application each side builds (a *kind* of
``benchmarks.sides.<worker>.BUILDERS``), the store its figures are read from,
and the issue's target when it is a row of the issue's table.  Keep the targets
here in step with the issue; README and BENCHMARKS.md quote them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.report import Target

PSR = "pyramid_session_redis 1.8.1"
PSR_LIMITS = "PSR + limits 5.8.0"
KVS1 = "pyramid-kvs 1.0.0"
DOGPILE = "dogpile.cache 1.5.0"
LIMITS = "limits 5.8.0"
BARE = "Pyramid alone"


@dataclass(frozen=True)
class Side:
    """Who builds one side's application: a worker, and its builder's kind."""

    worker: str
    kind: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str
    #: the store whose server counters the figures include: redis, memcached, memory
    store: str
    ours: Side
    anchor: Side | None = None
    params: dict[str, Any] = field(default_factory=dict)
    target: Target | None = None


def ours(kind: str, **params: Any) -> Side:
    return Side("ours", kind, "pyramid_kvs", params)


def anchor(kind: str, label: str, **params: Any) -> Side:
    return Side("anchors", kind, label, params)


def original(kind: str) -> Side:
    return Side("kvs1", kind, KVS1)


TABLE = "The issue's table (Redis)"
STORES = "Other stores"
CACHE = "The cache"
PERL = "Perl sessions"
GROWTH = "Session size (Redis)"

SCENARIOS = [
    Scenario(
        "session read", TABLE, "redis", ours("session_read"), anchor("session_read", PSR),
        target=Target("session read", "PSR", "0.80", "ratio", 0.5),
    ),
    Scenario(
        "session write", TABLE, "redis", ours("session_write"), anchor("session_write", PSR),
        target=Target("session write", "PSR", "1.14", "ratio", 0.8),
    ),
    Scenario(
        "new session", TABLE, "redis", ours("session_new"), anchor("session_new", PSR),
        target=Target("new session", "PSR", "0.53", "ratio", 0.5),
    ),
    Scenario(
        "session + rate limit", TABLE, "redis", ours("session_ratelimit"),
        anchor("session_ratelimit", PSR_LIMITS),
        target=Target("session + rate limit", "PSR + limits", "0.82", "ratio", 0.5),
    ),
    Scenario(
        "header session + rate limit", TABLE, "redis", ours("header_ratelimit"),
        original("header_ratelimit"),
        target=Target("header session + rate limit", KVS1, "1.11", "ratio", 0.7),
    ),
    Scenario(
        "cache hit", TABLE, "redis", ours("cache_hit"), anchor("cache_hit", DOGPILE),
        target=Target("cache hit", DOGPILE, "1.16", "ratio", 0.8),
    ),
    *(
        Scenario(
            f"{component} configured, unused", TABLE, "redis",
            ours("idle", component=component), Side("ours", "bare", BARE),
            target=Target(f"{component} configured, unused", BARE, "+19 µs", "delta", 2.0),
        )
        for component in ("session", "cache", "perlsess")
    ),
    Scenario(
        "session of 1000 keys, read", TABLE, "redis", ours("session_read"),
        anchor("session_read", PSR), params={"keys": 1000, "value_size": 100},
        target=Target("session of 1000 keys, read", "PSR", "4.34", "ratio", 1.0),
    ),
    Scenario("storable", TABLE, "memory", ours("storable")),
    # -- the memory and memcached stores ---------------------------------------------
    *(
        Scenario(f"session {what}, {store}", STORES, store, ours(kind), params={"store": store})
        for store in ("memory", "memcached")
        for what, kind in (("read", "session_read"), ("write", "session_write"),
                           ("new", "session_new"))
    ),
    *(
        Scenario(
            f"cache hit, {store}", STORES, store, ours("cache_hit"),
            anchor("cache_hit", DOGPILE), params={"store": store},
        )
        for store in ("memory", "memcached")
    ),
    *(
        Scenario(
            f"rate limit by address, {store}", STORES, store, ours("ratelimit_only"),
            anchor("ratelimit_only", LIMITS), params={"store": store},
        )
        for store in ("redis", "memory", "memcached")
    ),
    # -- the cache ---------------------------------------------------------------------
    Scenario("get_many of 20 keys", CACHE, "redis", ours("cache_many"),
             anchor("cache_many", DOGPILE)),
    Scenario("get_or_set, 8 threads, cold key", CACHE, "redis", ours("stampede"),
             anchor("stampede", DOGPILE)),
    # -- Perl sessions -----------------------------------------------------------------
    Scenario("request.perlsess read, redis", PERL, "redis", ours("perlsess"),
             original("perlsess")),
    # pyramid-kvs 1.0.0 cannot read from memcached on Python 3 (sides/kvs1.py says why)
    Scenario("request.perlsess read, memcached", PERL, "memcached", ours("perlsess"),
             params={"store": "memcached"}),
    # -- session size --------------------------------------------------------------------
    *(
        Scenario(
            f"session of {keys} x {label}, {what}", GROWTH, "redis", ours(kind),
            anchor(kind, PSR), params={"keys": keys, "value_size": size},
        )
        for keys, size, label in ((1, 100, "100 B"), (50, 100, "100 B"), (1000, 100, "100 B"),
                                  (1, 100_000, "100 KB"), (50, 100_000, "100 KB"))
        for what, kind in (("read", "session_read"), ("write", "session_write"))
        if not (keys == 1000 and what == "read")  # the table's row already
    ),
]  # fmt: skip

STORABLE_TARGETS = {
    "thaw": Target("Storable thaw, a Perl session", "PyPI storable 1.2.4", "2.3x faster",
                   "speedup", 4.0),
    "nfreeze": Target("Storable nfreeze", "Perl's own", "31x slower", "slowdown", 10.0),
}  # fmt: skip

#: the pairs the HTTP run serves with waitress and loads with wrk
HTTP_PAIRS = ("session read", "session + rate limit", "header session + rate limit", "cache hit")
