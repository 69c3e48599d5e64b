"""What a request leaves behind: nothing for the garbage collector.

The request holds its session and its Perl session view (``request.session``,
``request.perlsess``); were they to hold the request in turn, every request using
them would be a reference cycle, freed only by the cycle collector - work every
request pays later, and memory held meanwhile.  Driven through plain WSGI on real
Redis, so that only the application's own objects are counted.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyramid.request import Request
from webob import Request as WebObRequest

import apps
from pyramid_kvs import get_components

SECRET = "a-footprint-test-secret-of-32-chars"
PERL_ID = "0123456789abcdef0123456789abcdef"


def use_everything(request: Request) -> dict[str, Any]:
    request.session["visits"] = request.session.get("visits", 0) + 1
    request.cache.set("seen", request.cache.get("seen", 0) + 1)
    return {
        "visits": request.session["visits"],
        "perl": request.perlsess.get("user"),
        "remaining": request.ratelimit.states[0].remaining,
    }


def call(app: Callable[..., Any], headers: dict[str, str]) -> tuple[str, bytes]:
    environ = WebObRequest.blank("/", headers=headers).environ
    answer: list[Any] = []

    def start_response(status: str, header_list: list[Any], exc_info: Any = None) -> Any:
        answer[:] = [status, header_list]
        return lambda data: None

    body = b"".join(app(environ, start_response))
    for name, value in answer[1]:
        if name == "Set-Cookie" and value.startswith("session_id="):
            headers["Cookie"] = value.split(";")[0] + f"; CGISESSID={PERL_ID}"
    return answer[0], body


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("transport", ["cookie", "header"])
def test_requests_using_every_component_leave_no_cycle(
    redis_url: str, transport: str, collector_off: None
) -> None:
    settings = {
        "kvs.session.url": redis_url,
        "kvs.session.secret": SECRET,
        "kvs.cache.url": redis_url,
        "kvs.perlsess.url": redis_url,
        "kvs.perlsess.cookie_name": "CGISESSID",
        "kvs.ratelimit.limits": "1000/minute",
    }
    headers = {"Cookie": f"CGISESSID={PERL_ID}"}
    if transport == "header":
        settings |= {"kvs.session.session_type": "header", "kvs.session.key_name": "X-Token"}
        headers["X-Token"] = "a-footprint-token-0123456789"
    config = apps.configure(settings, lambda c: apps.json_view(c, "all", use_everything, "/"))
    app = config.make_wsgi_app()
    components = get_components(config.registry)
    assert components.perlsess is not None
    components.perlsess.write(PERL_ID, {"user": "alice"})
    try:
        for visit in range(1, 4):
            gc.collect()
            status, body = call(app, headers)
            assert status == "200 OK", body
            assert f'"visits": {visit}' in body.decode() and '"perl": "alice"' in body.decode()
            assert gc.collect() == 0, "the request left a reference cycle"
    finally:
        components.close()


def test_a_session_kept_past_its_request_says_so(redis_url: str) -> None:
    """Never used, a session cannot read an ended request; a Perl session view keeps
    the request's environ (no cycle: the environ does not hold the request) and reads."""
    kept: dict[str, Any] = {}

    def keep(request: Request) -> dict[str, Any]:
        kept["perlsess"] = request.perlsess
        kept["session"] = request.session
        return {}

    settings = {
        "kvs.session.url": redis_url,
        "kvs.session.secret": SECRET,
        "kvs.perlsess.url": redis_url,
        "kvs.perlsess.cookie_name": "CGISESSID",
    }
    config = apps.configure(settings, lambda c: apps.json_view(c, "keep", keep, "/"))
    app = config.make_wsgi_app()
    components = get_components(config.registry)
    assert components.perlsess is not None
    components.perlsess.write(PERL_ID, {"user": "alice"})
    assert call(app, {"Cookie": f"CGISESSID={PERL_ID}"})[0] == "200 OK"
    gc.collect()
    with pytest.raises(RuntimeError, match="the request of this session has ended"):
        kept["session"].get("user")
    assert kept["perlsess"].get("user") == "alice"
    components.close()
