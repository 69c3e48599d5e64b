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

from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator

from benchmarks.sides.common import (
    HEADER_TOKEN,
    LEGACY_RATE_LIMIT_HEADERS,
    Params,
    header_ratelimit_settings,
    perl_settings,
)
from benchmarks.subjects import Subject, get
from benchmarks.views import add_views


def make_app(settings: dict[str, Any]) -> Any:
    config = Configurator(settings=settings)
    config.include("pyramid_kvs")
    add_views(config)
    return config.make_wsgi_app()


def header_ratelimit(params: Params) -> Subject:
    app = make_app(header_ratelimit_settings(params))
    get(app, "/seed", HEADER_TOKEN)
    return Subject(app, "/read", HEADER_TOKEN, body=b"42", check=LEGACY_RATE_LIMIT_HEADERS)


def perlsess(params: Params) -> Subject:
    """Perl sessions on Redis only: see the module's docstring for memcached."""
    app = make_app(perl_settings({**params, "store": "redis"}))
    cookie = {"Cookie": f"session_id={params['perl_session_id']}"}
    return Subject(app, "/perl", cookie, body=b"jdupont")


BUILDERS: dict[str, Callable[[Params], Subject]] = {
    "header_ratelimit": header_ratelimit,
    "perlsess": perlsess,
}
CALLS: dict[str, Callable[[Params], dict[str, Any]]] = {}
