"""The original pyramid-kvs 1.0.0 (PyPI), with the same settings as ours.

pyramid_kvs 2 reads 1.x's JSON settings unchanged, so both sides of these
scenarios are configured by the very same strings.

Its Perl session reader needs help to run on Python 3: the Storable reader it embeds
is Python 2 code (it compares bytes with str, and fails on any input), so its
environment also has PyPI ``storable``, which it prefers when installed - as a 1.x
application on Python 3 had to.  It reads from Redis only: on memcached it gives
python3-memcached bytes keys, which that client refuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator

from benchmarks.subjects import Subject, get, has_headers
from benchmarks.views import add_views

Params = dict[str, Any]
SESSION_TTL = 1800


def make_app(settings: dict[str, Any]) -> Any:
    config = Configurator(settings=settings)
    config.include("pyramid_kvs")
    add_views(config)
    return config.make_wsgi_app()


def header_ratelimit(params: Params) -> Subject:
    host, port = params["redis"].split(":")
    settings = {
        "kvs.session": json.dumps(
            {
                "kvs": "redis",
                "kvs_kwargs": {"host": host, "port": int(port)},
                "session_type": "header",
                "key_name": "X-Auth-Token",
                "ttl": SESSION_TTL,
            }
        ),
        "kvs.ratelimit": json.dumps({"window": 60, "limit": 10_000_000}),
    }
    app = make_app(settings)
    token = {"X-Auth-Token": "bench-token-0123456789abcdef"}
    get(app, "/seed", token)
    check = has_headers("X-RateLimit-Limit", "X-RateLimit-Remaining")
    return Subject(app, "/read", token, body=b"42", check=check)


def perlsess(params: Params) -> Subject:
    host, port = params["redis"].split(":")
    settings = {
        "kvs.perlsess": json.dumps(
            {
                "kvs": "redis",
                "kvs_kwargs": {"host": host, "port": int(port)},
                "key_prefix": "perlsess::",
                "cookie_name": "session_id",
                "codec": "storable",
            }
        )
    }
    app = make_app(settings)
    cookie = {"Cookie": f"session_id={params['perl_session_id']}"}
    return Subject(app, "/perl", cookie, body=b"jdupont")


BUILDERS: dict[str, Callable[[Params], Subject]] = {
    "header_ratelimit": header_ratelimit,
    "perlsess": perlsess,
}
CALLS: dict[str, Callable[[Params], dict[str, Any]]] = {}
