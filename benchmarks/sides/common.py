"""What every side configures alike: secrets, TTLs, limits, store URLs, and the
original add-on's settings, which pyramid_kvs 2 and 1.0.0 both read unchanged.

Imported in every environment: it needs nothing beyond ``benchmarks.subjects``.
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.subjects import has_headers

Params = dict[str, Any]
#: signs cookies (and keys the stored records' names), as in production
SECRET = "bench-secret-0123456789abcdefghijklmnopqrstuvwxyz"
SESSION_TTL = 1800
#: limits far above what a run sends: every request is allowed and counted
LIMITS = "1000000/minute"
RATE_LIMIT_HEADERS = has_headers(
    "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy",
    "RateLimit",
)  # fmt: skip
#: the header session of the upgrade scenario, and the headers 1.x answers with
HEADER_TOKEN = {"X-Auth-Token": "bench-token-0123456789abcdef"}
LEGACY_RATE_LIMIT_HEADERS = has_headers("X-RateLimit-Limit", "X-RateLimit-Remaining")


def store_url(params: Params) -> str:
    """The run's store for *params* as a URL (pyramid_kvs' and ``limits``' alike)."""
    store = params.get("store", "redis")
    if store == "redis":
        return f"redis://{params['redis']}/0"
    if store == "memcached":
        return f"memcached://{params['memcached']}"
    return "memory://"


def _redis_kvs(params: Params) -> dict[str, Any]:
    host, port = params["redis"].split(":")
    return {"kvs": "redis", "kvs_kwargs": {"host": host, "port": int(port)}}


def header_ratelimit_settings(params: Params) -> dict[str, str]:
    """The original add-on's settings: a header session and its limit, on Redis."""
    session = {
        **_redis_kvs(params),
        "session_type": "header",
        "key_name": "X-Auth-Token",
        "ttl": SESSION_TTL,
    }
    return {
        "kvs.session": json.dumps(session),
        "kvs.ratelimit": json.dumps({"window": 60, "limit": 10_000_000}),
    }


def perl_settings(params: Params) -> dict[str, str]:
    """The original add-on's form, as a Perl migration's ``.ini`` has it."""
    if params.get("store") == "memcached":
        store: dict[str, Any] = {
            "kvs": "memcache",
            "kvs_kwargs": {"servers": [params["memcached"]]},
        }
    else:
        store = _redis_kvs(params)
    return {
        "kvs.perlsess": json.dumps(
            {**store, "key_prefix": "perlsess::", "cookie_name": "session_id", "codec": "storable"}
        )
    }
