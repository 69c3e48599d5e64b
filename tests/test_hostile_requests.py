"""Bytes an outsider controls - the Cookie header, session tokens - never make a 500.

Hypothesis sends arbitrary header bytes (as a WSGI server hands them over: latin-1
text) through an application with every component configured: sessions, the rate
limiter keyed by session, the cache and the Perl session reader.  Each request must
be answered normally, and a cookie id the client made up must never be adopted.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyramid.config import Configurator
from webtest import TestApp

from apps import json_view
from apps import make_app as make_test_app

SECRET = "a-hostile-request-secret-of-some-length"

#: what a WSGI server may put in a header value: any byte, decoded as latin-1
header_values = st.binary(max_size=600).map(lambda raw: raw.decode("latin-1"))
cookie_names = st.sampled_from(["session_id", "CGISESSID", "a", "session_id ", ""])


def make_app(**session: str) -> TestApp:
    settings = {
        "kvs.session.url": "memory://",
        "kvs.session.secret": SECRET,
        "kvs.ratelimit.limits": "1000000/second",
        "kvs.cache.url": "memory://",
        "kvs.perlsess.url": "memory://",
        "kvs.perlsess.cookie_name": "CGISESSID",
        **{f"kvs.session.{name}": value for name, value in session.items()},
    }
    return make_test_app(settings, views)


def views(config: Configurator) -> None:
    def everything(request: Any) -> dict[str, Any]:
        request.session["seen"] = request.session.get("seen", 0) + 1
        return {
            "seen": request.session["seen"],
            "perl": dict(request.perlsess),
            "cached": request.cache.get("k"),
            "remaining": request.ratelimit.tightest.remaining,
        }

    json_view(config, "all", everything, "/")


COOKIE_APP = make_app()
HEADER_APP = make_app(session_type="header", key_name="X-Auth-Token X-Api-Key")
RELAXED = settings(max_examples=300, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


@RELAXED
@given(name=cookie_names, value=header_values)
def test_any_cookie_header(name: str, value: str) -> None:
    for cookie in (f"{name}={value}", f'{name}="{value}"', value):
        response = COOKIE_APP.get("/", extra_environ={"HTTP_COOKIE": cookie})
        assert response.status_int == 200
        assert response.json["seen"] == 1  # a made-up id is never adopted
        for header in response.headers.getall("Set-Cookie"):
            if header.startswith("session_id="):
                issued = header.split(";")[0][len("session_id=") :]
                assert issued and issued not in cookie


@RELAXED
@given(first=header_values, second=header_values)
def test_any_token_header(first: str, second: str) -> None:
    environ = {"HTTP_X_AUTH_TOKEN": first, "HTTP_X_API_KEY": second}
    response = HEADER_APP.get("/", extra_environ=environ)
    assert response.status_int == 200
    assert "Set-Cookie" not in response.headers
