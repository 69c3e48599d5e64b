"""``request.session`` against every backend, through Pyramid and WebTest."""

from __future__ import annotations

import json
import logging
import re
import string
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.interfaces import ISession
from webtest import TestApp

import apps
from pyramid_kvs import KVSSession, get_components, prefetch_session
from pyramid_kvs.session import SessionFactory, parse_session
from pyramid_kvs.stores import Store
from pyramid_kvs.stores.memory import MemoryStore
from roundtrips import count_round_trips
from servers import unused_port

SECRET = "a-test-secret-of-at-least-32-characters"
SERVERS = ["redis", "memcached"]


def views(config: Configurator) -> None:
    """Small views driving the session from the URL."""

    def route(name: str, pattern: str, view: Callable[[Any], Any], **options: Any) -> None:
        config.add_route(name, pattern)
        config.add_view(view, route_name=name, renderer="json", **options)

    def show(request: Any) -> dict[str, Any]:
        session = request.session
        return {"data": dict(session), "new": session.new, "created": session.created}

    def set_value(request: Any) -> dict[str, Any]:
        request.session[request.matchdict["key"]] = json.loads(request.matchdict["value"])
        return show(request)

    def delete(request: Any) -> dict[str, Any]:
        del request.session[request.matchdict["key"]]
        return show(request)

    def append(request: Any) -> dict[str, Any]:
        request.session["cart"]["items"].append(request.matchdict["item"])  # in place
        return show(request)

    def invalidate(request: Any) -> dict[str, Any]:
        request.session.invalidate()
        for key, value in request.params.items():
            request.session[key] = value
        return {"data": dict(request.session)}

    def login(request: Any) -> dict[str, Any]:
        request.session.regenerate_id()
        request.session["user"] = request.matchdict["user"]
        return show(request)

    def bind(request: Any) -> dict[str, Any]:
        request.session.update_session_token("X-Auth-Token", request.params["token"])
        request.session["user"] = "ada"
        return {"data": dict(request.session)}

    route("nothing", "/nothing", lambda request: {"ok": True})
    route("show", "/show", show)
    route("set", "/set/{key}/{value}", set_value)
    route("delete", "/delete/{key}", delete)
    route("append", "/append/{item}", append)
    route("invalidate", "/invalidate", invalidate)
    route("login", "/login/{user}", login)
    route("bind", "/bind", bind)


def make_app(url: str, **options: Any) -> TestApp:
    settings = {"kvs.session.url": url, "kvs.session.secret": SECRET}
    settings.update({f"kvs.session.{name}": value for name, value in options.items()})
    return apps.make_app(settings, views)


def session_store(app: TestApp) -> Store:
    factory = get_components(app.app.registry).session_factory
    assert factory is not None
    return factory.store


def factory_of(app: TestApp) -> SessionFactory:
    factory = get_components(app.app.registry).session_factory
    assert factory is not None
    return factory


def cookie_of(response: Any) -> str | None:
    """The session cookie the response sets ('' when it expires it)."""
    for header in response.headers.getall("Set-Cookie"):
        name, _, rest = header.partition("=")
        if name == "session_id":
            return rest.split(";")[0]
    return None


def warm(app: TestApp) -> None:
    """Open the client's connection, so that counts do not include its handshake."""
    session_store(app).ping()


# -- settings ------------------------------------------------------------------------------


def test_settings_in_the_original_json_form_and_defaults() -> None:
    parsed = parse_session(
        {
            "kvs.session": '{"kvs": "redis", "key_name": "session_id", "session_type": '
            '"cookie", "ttl": 300, "key_prefix": "session::"}'
        }
    )
    assert parsed is not None and parsed.store.backend == "redis"
    defaults = parse_session({"kvs.session": "{}"})
    assert defaults is not None
    assert (defaults.key_name, defaults.session_type) == ("session_id", "cookie")
    assert defaults.ttl == 300
    assert (defaults.key_prefix, defaults.codec, defaults.secret) == ("session::", "json", None)
    assert (defaults.cookie_httponly, defaults.cookie_samesite) == (True, "Lax")
    assert (defaults.cookie_secure, defaults.cookie_path, defaults.cookie_max_age) == (
        False, "/", None,
    )  # fmt: skip
    assert (defaults.lifetime, defaults.on_unavailable) == (None, "error")
    assert parse_session({}) is None


def test_flat_keys_and_header_names() -> None:
    parsed = parse_session(
        {
            "kvs.session": '{"ttl": 60}',
            "kvs.session.session_type": "header",
            "kvs.session.key_name": "X-Auth-Token, X-Api-Key",
            "kvs.session.ttl": "120",
            "kvs.session.cookie_samesite": "strict",
        }
    )
    assert parsed is not None
    assert parsed.key_names == ("X-Auth-Token", "X-Api-Key")
    assert (parsed.ttl, parsed.cookie_samesite) == (120, "Strict")
    listed = parse_session({"kvs.session.key_name": '["A-Token"]'})
    assert listed is not None and listed.key_names == ("A-Token",)


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"kvs.session.session_type": "url"}, ["kvs.session.session_type", "cookie, header"]),
        ({"kvs.session.key_name": "a b"}, ["kvs.session.key_name", "one cookie name"]),
        ({"kvs.session.key_name": "bad;name"}, ["kvs.session.key_name", "names"]),
        ({"kvs.session.cookie_samesite": "loose"}, ["cookie_samesite", "Strict, Lax, None"]),
        ({"kvs.session.cookie_samesite": "None"}, ["cookie_samesite", "cookie_secure"]),
        ({"kvs.session.on_unavailable": "retry"}, ["on_unavailable", "error, empty"]),
        ({"kvs.session.lifetime": "-1"}, ["kvs.session.lifetime", "positive"]),
        ({"kvs.session.codec": "yaml"}, ["kvs.session.codec"]),
        ({"kvs.session": "{oops"}, ["kvs.session", "JSON"]),
        ({"kvs.session.secret": "short-secret"}, ["kvs.session.secret", "32 characters"]),
    ],
)
def test_bad_settings_fail_at_start_up(settings: dict[str, Any], names: list[str]) -> None:
    config = apps.configure(settings)
    with pytest.raises(ConfigurationError) as failure:
        config.commit()
    for name in names:
        assert name in str(failure.value)
    assert "short-secret" not in str(failure.value)  # secrets are never echoed


# -- the ISession API ----------------------------------------------------------------------


def test_the_session_is_an_isession(backend_url: str) -> None:
    app = make_app(backend_url)
    seen: list[Any] = []
    config = Configurator(registry=app.app.registry)
    config.add_route("kind", "/kind")
    config.add_view(lambda request: seen.append(request.session) or {}, route_name="kind",
                    renderer="json")  # fmt: skip
    config.commit()
    app.get("/kind")
    assert isinstance(seen[0], KVSSession) and ISession.providedBy(seen[0])


def test_values_persist_across_requests(backend_url: str) -> None:
    app = make_app(backend_url)
    first = app.get("/set/user/%7B%22name%22%3A%22ada%22%7D")
    assert first.json["new"] is True
    assert cookie_of(first)
    second = app.get("/set/count/1")
    assert second.json["data"] == {"user": {"name": "ada"}, "count": 1}
    assert second.json["new"] is False
    assert cookie_of(second) is None  # the id did not change: no cookie to send
    assert second.json["created"] == first.json["created"]  # the stored creation time
    assert app.get("/delete/user").json["data"] == {"count": 1}
    assert app.get("/show").json["data"] == {"count": 1}


def test_the_mapping_api(backend_url: str) -> None:
    app = make_app(backend_url)
    results: dict[str, Any] = {}

    def exercise(request: Any) -> dict[str, Any]:
        session = request.session
        session.update({"a": 1, "b": [1], "c": "x"})
        results["len"] = len(session)
        results["keys"] = sorted(session.keys())
        results["contains"] = ("a" in session, "z" in session)
        results["get"] = (session.get("a"), session.get("z", "default"))
        results["pop"] = (session.pop("c"), session.pop("c", None))
        results["setdefault"] = (session.setdefault("a", 9), session.setdefault("d", 4))
        with pytest.raises(KeyError):
            session["missing"]
        with pytest.raises(TypeError):
            session[1] = "x"
        with pytest.raises(ValueError, match="reserved"):
            session["__created__"] = 1
        return {}

    def clear(request: Any) -> dict[str, Any]:
        request.session.clear()
        return {}

    config = Configurator(registry=app.app.registry)
    config.add_route("exercise", "/exercise")
    config.add_view(exercise, route_name="exercise", renderer="json")
    config.add_route("clear", "/clear")
    config.add_view(clear, route_name="clear", renderer="json")
    config.commit()
    app.get("/exercise")
    assert results == {
        "len": 3,
        "keys": ["a", "b", "c"],
        "contains": (True, False),
        "get": (1, "default"),
        "pop": ("x", None),
        "setdefault": (1, 4),
    }
    assert app.get("/show").json["data"] == {"a": 1, "b": [1], "d": 4}
    app.get("/clear")
    assert app.get("/show").json["data"] == {}


def test_in_place_changes_of_nested_values_are_saved(backend_url: str) -> None:
    app = make_app(backend_url)
    app.get("/set/cart/%7B%22items%22%3A%5B%5D%7D")  # {"items": []}
    app.get("/append/apple")
    app.get("/append/pear")
    assert app.get("/show").json["data"] == {"cart": {"items": ["apple", "pear"]}}


def test_flash_queues(backend_url: str) -> None:
    app = make_app(backend_url)
    results: dict[str, Any] = {}

    def flash(request: Any) -> dict[str, Any]:
        session = request.session
        session.flash("saved")
        session.flash("saved")
        session.flash("once", allow_duplicate=False)
        session.flash("once", allow_duplicate=False)
        session.flash("careful", queue="warning")
        return {}

    def read(request: Any) -> dict[str, Any]:
        session = request.session
        results["peek"] = session.peek_flash()
        results["pop"] = session.pop_flash()
        results["again"] = session.pop_flash()
        results["warning"] = session.pop_flash("warning")
        return {}

    config = Configurator(registry=app.app.registry)
    for name, view in (("flash", flash), ("read", read)):
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name, renderer="json")
    config.commit()
    app.get("/flash")
    app.get("/read")
    assert results == {
        "peek": ["saved", "saved", "once"],
        "pop": ["saved", "saved", "once"],
        "again": [],
        "warning": ["careful"],
    }
    app.get("/read")
    assert results["pop"] == [] and results["warning"] == []  # popped for good


def test_pyramid_csrf_check_end_to_end(backend_url: str) -> None:
    app = make_app(backend_url)
    config = Configurator(registry=app.app.registry)
    config.set_default_csrf_options(require_csrf=True)
    config.add_route("form", "/form")
    config.add_view(lambda request: {"token": request.session.get_csrf_token()},
                    route_name="form", request_method="GET", renderer="json")  # fmt: skip
    config.add_view(lambda request: {"posted": True}, route_name="form",
                    request_method="POST", renderer="json")  # fmt: skip
    config.add_route("rotate", "/rotate")
    config.add_view(lambda request: {"token": request.session.new_csrf_token()},
                    route_name="rotate", renderer="json")  # fmt: skip
    config.commit()
    token = app.get("/form").json["token"]
    assert app.get("/form").json["token"] == token  # stable until rotated
    app.post("/form", {"csrf_token": "forged"}, status=400)
    app.post("/form", status=400)
    assert app.post("/form", {"csrf_token": token}).json == {"posted": True}
    assert app.post("/form", headers={"X-CSRF-Token": token}).json == {"posted": True}
    rotated = app.get("/rotate").json["token"]
    assert rotated != token
    app.post("/form", {"csrf_token": token}, status=400)
    assert app.post("/form", {"csrf_token": rotated}).json == {"posted": True}


def csrf_form(config: Configurator) -> None:
    """A form under Pyramid's default CSRF check, whose error page uses the session
    (as a layout showing flash messages and a token would)."""
    from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken
    from pyramid.httpexceptions import HTTPSeeOther

    def refused(exc: Exception, request: Any) -> dict[str, Any]:
        request.response.status = 400
        request.session.flash("refused")
        return {"refused": type(exc).__name__, "token": request.session.get_csrf_token()}

    def redirect(request: Any) -> None:
        request.session["redirected"] = True
        raise HTTPSeeOther("/show")

    config.set_default_csrf_options(require_csrf=True)
    config.add_route("form", "/form")
    config.add_view(lambda request: {"token": request.session.get_csrf_token()},
                    route_name="form", request_method="GET", renderer="json")  # fmt: skip
    config.add_view(lambda request: {"posted": True}, route_name="form",
                    request_method="POST", renderer="json")  # fmt: skip
    for refusal in (BadCSRFToken, BadCSRFOrigin):
        config.add_view(refused, context=refusal, renderer="json")
    config.add_route("redirect", "/redirect")
    config.add_view(redirect, route_name="redirect")


def csrf_app(url: str) -> TestApp:
    return apps.make_app({"kvs.session.url": url, "kvs.session.secret": SECRET}, views, csrf_form)


HTTPS = {"wsgi.url_scheme": "https", "HTTP_HOST": "shop.example"}
EVIL_ORIGIN = {"Origin": "https://evil.example"}


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_forged_post_without_a_cookie_stores_nothing_and_sets_no_cookie(
    backend: str, backend_url: str
) -> None:
    app = csrf_app(backend_url)
    warm(app)
    with count_round_trips() as trips:
        forged = [
            app.post("/form", {"csrf_token": "forged"}, status=400),
            app.post("/form", status=400),  # no token at all
            app.post("/form", headers=EVIL_ORIGIN, extra_environ=HTTPS, status=400),
        ]
    refusals = [response.json["refused"] for response in forged]
    assert refusals == ["BadCSRFToken", "BadCSRFToken", "BadCSRFOrigin"]
    assert all("Set-Cookie" not in response.headers for response in forged)
    assert app.cookies == {}
    assert trips.total == 0  # not even a write
    assert list(session_store(app).scan()) == []


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_logged_in_users_cookie_survives_a_forged_post(backend: str, backend_url: str) -> None:
    user = csrf_app(backend_url)
    cookie = cookie_of(user.get("/set/user/%22ada%22"))
    token = user.get("/form").json["token"]
    assert cookie is not None
    stored = sorted(session_store(user).scan())
    # a cross-site form: the browser leaves the SameSite=Lax cookie out, so the
    # request comes from a client without a session; its answer must set no cookie,
    # which the browser would put in place of the user's
    cross_site = TestApp(user.app)
    response = cross_site.post("/form", {"csrf_token": "forged", "user": "mallory"}, status=400)
    assert response.json["refused"] == "BadCSRFToken" and cookie_of(response) is None
    # the same with the cookie sent and a wrong token: the session is left as it was
    response = user.post("/form", {"csrf_token": "forged"}, status=400)
    assert cookie_of(response) is None
    assert sorted(session_store(user).scan()) == stored
    assert user.cookies["session_id"] == cookie
    shown = user.get("/show").json
    assert shown["data"] == {"user": "ada", "_csrf_token": token}  # no "refused" flash
    assert user.post("/form", {"csrf_token": token}).json == {"posted": True}


def test_other_error_answers_still_save_the_session(backend_url: str) -> None:
    app = csrf_app(backend_url)
    response = app.get("/redirect", status=303)  # the view raised HTTPSeeOther
    assert cookie_of(response)
    assert app.get("/show").json["data"] == {"redirected": True}


# -- laziness and round trips ------------------------------------------------------------


def test_an_untouched_or_empty_session_is_never_stored(backend: str, backend_url: str) -> None:
    app = make_app(backend_url)
    with count_round_trips() as trips:
        assert cookie_of(app.get("/nothing")) is None
        response = app.get("/show")  # read, stays empty
    assert cookie_of(response) is None and response.json["new"] is True
    assert trips.total == 0
    if backend != "memcached":
        assert list(session_store(app).scan()) == []


@pytest.mark.parametrize("backend", SERVERS)
def test_round_trips_per_request(backend: str, backend_url: str) -> None:
    app = make_app(backend_url)
    warm(app)
    counts = {}
    for kind, url in (
        ("new session", "/set/a/1"),
        ("read only", "/show"),
        ("write", "/set/b/2"),
        ("nested write", "/set/cart/%7B%22items%22%3A%5B%5D%7D"),
        ("no session use", "/nothing"),
        ("login", "/login/ada"),
        ("read after login", "/show"),
        ("invalidate", "/invalidate"),
    ):
        with count_round_trips() as trips:
            app.get(url)
        counts[kind] = trips.total
    assert counts == {
        "new session": 1,
        "read only": 1,
        "write": 2,
        "nested write": 2,
        "no session use": 0,
        # load, then delete the old id and write the new one: one pipeline on Redis
        "login": 2 if backend == "redis" else 3,
        "read after login": 1,
        "invalidate": 1,  # a delete, without loading first
    }


@pytest.mark.parametrize("backend", SERVERS)
@pytest.mark.parametrize("legacy_sessions", ["true", "false"])
def test_round_trips_per_request_of_header_sessions(
    backend: str, backend_url: str, legacy_sessions: str
) -> None:
    app = make_app(
        backend_url,
        session_type="header",
        key_name="X-Auth-Token",
        legacy_sessions=legacy_sessions,
    )
    warm(app)
    token = {"X-Auth-Token": "tok-" + "r" * 40}
    counts = {}
    for kind, url, headers in (
        ("no token", "/set/a/1", {}),
        ("new token", "/set/a/1", token),
        ("read only", "/show", token),
        ("write", "/set/b/2", token),
        ("no session use", "/nothing", token),
        ("invalidate", "/invalidate", token),
    ):
        with count_round_trips() as trips:
            app.get(url, headers=headers)
        counts[kind] = trips.total
    # with legacy_sessions, a token the store does not know is also looked up where
    # 1.x kept it: in the same pipeline on Redis, after the miss on memcached
    legacy = legacy_sessions == "true"
    assert counts == {
        "no token": 0,
        "new token": 3 if legacy and backend == "memcached" else 2,
        "read only": 1,
        "write": 2,
        "no session use": 0,
        # the record and the 1.x key: one pipeline on Redis, two deletes on memcached
        "invalidate": 2 if legacy and backend == "memcached" else 1,
    }


# -- ids and fixation ---------------------------------------------------------------------


def test_an_unknown_id_is_never_adopted(backend_url: str) -> None:
    app = make_app(backend_url)
    planted = factory_of(app).cookie_value("A" * 43)  # well-formed and signed
    app.set_cookie("session_id", planted)
    response = app.get("/set/a/1")
    assert response.json["new"] is True
    issued = cookie_of(response)
    assert issued and issued != planted
    # a request with the planted id and nothing to save expires the cookie
    fresh = make_app(backend_url)
    fresh.set_cookie("session_id", planted)
    expired = fresh.get("/show")
    assert cookie_of(expired) == "" and "Max-Age=0" in expired.headers["Set-Cookie"]


@pytest.mark.parametrize("backend", SERVERS)
def test_malformed_and_tampered_ids_never_reach_the_store(backend: str, backend_url: str) -> None:
    app = make_app(backend_url)
    warm(app)
    good = cookie_of(app.get("/set/a/1"))
    assert good is not None
    session_id, _, signature = good.partition(".")
    forged = session_id[:-1] + ("A" if session_id[-1] != "A" else "B") + "." + signature
    for value in (session_id, forged, "short", "x" * 43 + "." + "y" * 43, good + "x", "é" * 43):
        client = make_app(backend_url)
        client.set_cookie("session_id", value)
        with count_round_trips() as trips:
            response = client.get("/show")
        assert trips.total == 0, value
        assert response.json == {"data": {}, "new": True, "created": response.json["created"]}
    app.set_cookie("session_id", good)
    assert app.get("/show").json["data"] == {"a": 1}


def test_unsigned_ids_without_a_secret(backend_url: str) -> None:
    app = make_app(backend_url, secret="")
    issued = cookie_of(app.get("/set/a/1"))
    assert issued is not None and len(issued) == 43 and "." not in issued
    assert app.get("/show").json["data"] == {"a": 1}


def test_regenerate_id_at_login_keeps_the_data_and_kills_the_old_id(backend_url: str) -> None:
    app = make_app(backend_url)
    before = cookie_of(app.get("/set/cart/%5B1%5D"))
    logged_in = app.get("/login/ada")
    after = cookie_of(logged_in)
    assert after and after != before
    assert logged_in.json["data"] == {"cart": [1], "user": "ada"}
    assert app.get("/show").json["data"] == {"cart": [1], "user": "ada"}
    thief = make_app(backend_url)
    thief.set_cookie("session_id", before or "")
    assert thief.get("/show").json["data"] == {}  # the pre-login id is worthless


def test_invalidate_forgets_the_session(backend_url: str) -> None:
    app = make_app(backend_url)
    old = cookie_of(app.get("/set/user/%22ada%22"))
    response = app.get("/invalidate")
    assert response.json["data"] == {}
    assert cookie_of(response) == ""  # expired
    replay = make_app(backend_url)
    replay.set_cookie("session_id", old or "")
    assert replay.get("/show").json["data"] == {}  # deleted from the store
    # writes after invalidate() in the same request start a new session
    app = make_app(backend_url)
    old = cookie_of(app.get("/set/user/%22ada%22"))
    response = app.get("/invalidate", {"flash": "bye"})
    new = cookie_of(response)
    assert new and new != old
    assert app.get("/show").json["data"] == {"flash": "bye"}


# -- cookies ------------------------------------------------------------------------------


def test_cookie_defaults_and_vary() -> None:
    app = make_app("memory://")
    response = app.get("/set/a/1")
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "secure" not in header.lower() and "Max-Age" not in header
    assert response.headers["Vary"] == "Cookie"
    assert app.get("/show").headers["Vary"] == "Cookie"
    assert "Vary" not in app.get("/nothing").headers


def test_cookie_options() -> None:
    app = make_app(
        "memory://",
        cookie_secure="true",
        cookie_domain="example.com",
        cookie_path="/app",
        cookie_max_age="3600",
        cookie_samesite="Strict",
        cookie_httponly="false",
        key_name="sid",
    )
    header = app.get("/set/a/1", extra_environ={"HTTP_HOST": "example.com"}).headers["Set-Cookie"]
    assert header.startswith("sid=")
    for part in ("Domain=example.com", "Path=/app", "Max-Age=3600", "secure", "SameSite=Strict"):
        assert part in header
    assert "HttpOnly" not in header


# -- the header transport ---------------------------------------------------------------------


def test_header_sessions(backend: str, backend_url: str) -> None:
    app = make_app(backend_url, session_type="header", key_name="X-Auth-Token X-Api-Key")
    anonymous = app.get("/set/a/1")
    assert "Set-Cookie" not in anonymous.headers
    assert app.get("/show").json["data"] == {}  # without a token nothing is kept
    token = "tok-" + "x" * 40  # issued by another service: the store has never seen it
    adopted = app.get("/set/a/1", headers={"X-Auth-Token": token})
    assert adopted.json["new"] is True and "Set-Cookie" not in adopted.headers
    for header in ("X-Auth-Token", "X-Api-Key", "x-api-key"):
        shown = app.get("/show", headers={header: token})
        assert shown.json["data"] == {"a": 1} and shown.json["new"] is False
        assert "X-Auth-Token" in shown.headers["Vary"]
    app.get("/set/b/2", headers={"X-Api-Key": token})
    assert app.get("/show", headers={"X-Auth-Token": token}).json["data"] == {"a": 1, "b": 2}
    assert app.get("/show", headers={"X-Auth-Token": token + "-other"}).json["data"] == {}
    # the store keeps a hash of the token, never the token itself
    store = session_store(app)
    assert store.load_record(factory_of(app).storage_key(token), 60) is not None
    assert store.load_record(token, 60) is None
    if backend != "memcached":
        assert all(token not in key for key in store.scan())


def test_a_read_of_an_unknown_token_stores_nothing(backend_url: str) -> None:
    app = make_app(backend_url, session_type="header", key_name="X-Auth-Token")
    token = "never-written"
    assert app.get("/show", headers={"X-Auth-Token": token}).json["new"] is True
    assert session_store(app).load_record(factory_of(app).storage_key(token), 60) is None


@pytest.mark.parametrize(
    ("token", "valid"),
    [
        ("t", True),
        ("Bearer eyJhbGciOi.J9", True),  # inner spaces, as Authorization values have
        ("~!#$%&'*+-.^_`|" + "x" * 4081, True),  # 4096 visible ASCII characters
        ("x" * 4097, False),
        ("caf\xe9", False),  # not ASCII (latin-1 in WSGI)
        ("tab\there", False),
    ],
)
def test_which_tokens_name_a_session(token: str, valid: bool) -> None:
    app = make_app("memory://", session_type="header", key_name="X-Auth-Token")
    app.get("/set/a/1", headers={"X-Auth-Token": token})
    shown = app.get("/show", headers={"X-Auth-Token": token}).json["data"]
    assert shown == ({"a": 1} if valid else {})


def test_a_minimum_token_length_can_be_required() -> None:
    app = make_app(
        "memory://", session_type="header", key_name="X-Auth-Token", token_min_length="16"
    )
    for token, kept in (("short", False), ("a-long-enough-token", True)):
        app.get("/set/a/1", headers={"X-Auth-Token": token})
        expected = {"a": 1} if kept else {}
        assert app.get("/show", headers={"X-Auth-Token": token}).json["data"] == expected
    with pytest.raises(ConfigurationError, match=r"token_min_length: expected a whole number"):
        make_app("memory://", token_min_length="0")


def test_strict_mode_only_knows_bound_tokens(backend_url: str) -> None:
    app = make_app(
        backend_url, session_type="header", key_name="X-Auth-Token", adopt_tokens="false"
    )
    token = "tok-" + "x" * 40
    unknown = app.get("/set/a/1", headers={"X-Auth-Token": token})
    assert unknown.json["new"] is True
    assert app.get("/show", headers={"X-Auth-Token": token}).json["data"] == {}  # not adopted
    bound = app.get("/bind", {"token": token})
    assert bound.json["data"] == {"user": "ada"} and "Set-Cookie" not in bound.headers
    assert app.get("/show", headers={"X-Auth-Token": token}).json["data"] == {"user": "ada"}


def test_invalidating_a_header_session_forgets_its_data(backend_url: str) -> None:
    app = make_app(backend_url, session_type="header", key_name="X-Auth-Token")
    token = {"X-Auth-Token": "tok-" + "y" * 40}
    app.get("/set/a/1", headers=token)
    # a write after invalidate() starts again under the same token
    assert app.get("/invalidate", {"b": "2"}, headers=token).json["data"] == {"b": "2"}
    assert app.get("/show", headers=token).json["data"] == {"b": "2"}
    app.get("/invalidate", headers=token)
    assert app.get("/show", headers=token).json == {
        "data": {}, "new": True, "created": ANY_NUMBER,
    }  # fmt: skip


def test_update_session_token_moves_the_data(backend_url: str) -> None:
    app = make_app(backend_url, session_type="header", key_name="X-Auth-Token")
    first, second = "first-" + "1" * 30, "second-" + "2" * 30
    app.get("/bind", {"token": first})
    app.get("/set/cart/3", headers={"X-Auth-Token": first})
    moved = app.get("/bind", {"token": second}, headers={"X-Auth-Token": first})
    assert moved.json["data"] == {"user": "ada", "cart": 3}
    assert app.get("/show", headers={"X-Auth-Token": second}).json["data"] == moved.json["data"]
    assert app.get("/show", headers={"X-Auth-Token": first}).json["data"] == {}


def test_update_session_token_takes_the_header_name_in_any_case() -> None:
    app = make_app("memory://", session_type="header", key_name="X-Auth-Token")
    request = _request(app)
    for spelling in ("x-auth-token", "X-AUTH-TOKEN", "X-Auth-Token"):
        session = factory_of(app)(request)
        session.update_session_token(spelling, "t")  # 1.x spelled it in lower case
        assert session._id == "t"


def test_update_session_token_checks_its_arguments() -> None:
    header_app = make_app(
        "memory://", session_type="header", key_name="X-Auth-Token", token_min_length="8"
    )
    factory = factory_of(header_app)
    request = _request(header_app)
    session = factory(request)
    with pytest.raises(ValueError, match="not a session header"):
        session.update_session_token("X-Other", "t" * 20)
    with pytest.raises(ValueError, match="8 to 4096"):
        session.update_session_token("X-Auth-Token", "short")
    with pytest.raises(ValueError, match="visible ASCII"):
        session.update_session_token("X-Auth-Token", "with\nnewline")
    with pytest.raises(RuntimeError, match="update_session_token"):
        session.regenerate_id()
    cookie_factory = factory_of(make_app("memory://"))
    with pytest.raises(RuntimeError, match="header"):
        cookie_factory(request).update_session_token("X-Auth-Token", "t" * 20)


class _AnyNumber:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, (int, float))


ANY_NUMBER = _AnyNumber()


def _request(app: TestApp) -> Any:
    from pyramid.request import Request

    request = Request.blank("/")
    request.registry = app.app.registry
    return request


# -- bad data, outages ------------------------------------------------------------------------


def test_a_value_that_does_not_decode_is_dropped_and_the_rest_kept(
    backend_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(backend_url)
    cookie = cookie_of(app.get("/set/a/1"))
    assert cookie is not None
    key = factory_of(app).storage_key(cookie.partition(".")[0])
    store = session_store(app)
    fields = {"__created__": b"1", "bad": b"\x80 not json", "good": b"2"}
    with caplog.at_level(logging.WARNING, logger="pyramid_kvs.session"):
        store.replace_record(key, fields, 60)
        response = app.get("/show")  # dict(session): every value is decoded
        assert response.json == {"data": {"good": 2}, "new": False, "created": 1.0}
        assert "does not decode as json, dropped" in caplog.text
        assert cookie_of(response) is None  # the cookie stays: the session does
    app.get("/set/other/3")  # a write removes the bad value from the store too
    record = store.load_record(key, 60)
    assert record is not None and set(record.fields) == {"__created__", "good", "other"}


@pytest.mark.parametrize("read", ["get", "contains", "getitem"])
def test_a_value_that_does_not_decode_reads_as_absent(read: str) -> None:
    app = make_app("memory://")
    cookie = cookie_of(app.get("/set/a/1"))
    assert cookie is not None
    key = factory_of(app).storage_key(cookie.partition(".")[0])
    session_store(app).replace_record(key, {"__created__": b"1", "a": b"\xff"}, 60)
    config = Configurator(registry=app.app.registry)

    def probe(request: Any) -> dict[str, Any]:
        session = request.session
        if read == "get":
            return {"a": session.get("a", "default")}
        if read == "contains":
            return {"a": "a" in session}
        try:
            return {"a": session["a"]}
        except KeyError:
            return {"a": "KeyError"}

    config.add_route("probe", "/probe")
    config.add_view(probe, route_name="probe", renderer="json")
    config.commit()
    expected = {"get": "default", "contains": False, "getitem": "KeyError"}[read]
    assert app.get("/probe").json == {"a": expected}


def test_garbage_in_the_store_gives_a_fresh_session(
    backend_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(backend_url)
    cookie = cookie_of(app.get("/set/a/1"))
    assert cookie is not None
    key = factory_of(app).storage_key(cookie.partition(".")[0])
    store = session_store(app)
    with caplog.at_level(logging.WARNING, logger="pyramid_kvs.session"):
        store.replace_record(key, {"__created__": b"yesterday", "a": b"1"}, 60)
        response = app.get("/show")
        assert response.json == {"data": {}, "new": True, "created": response.json["created"]}
        assert "no valid creation time" in caplog.text
        assert cookie_of(response) == ""  # the cookie pointing at garbage is expired
        store.set(key, b"not a record at all")
        app.set_cookie("session_id", cookie)
        assert app.get("/show").json["data"] == {}
        assert "not a record" in caplog.text
    written = app.get("/set/b/2")
    new_cookie = cookie_of(written)
    assert new_cookie and new_cookie != cookie  # the broken id is not reused


def test_a_record_rewritten_after_invalidate_is_not_adopted(backend_url: str) -> None:
    app = make_app(backend_url)
    cookie = cookie_of(app.get("/set/user/%22ada%22"))
    assert cookie is not None
    key = factory_of(app).storage_key(cookie.partition(".")[0])
    store = session_store(app)
    store.delete(key)  # invalidated by one request ...
    store.update_record(key, {"cart": b"[1]"}, [], 60)  # ... updated by an overlapping one
    assert app.get("/show").json["data"] == {}


@pytest.fixture
def dead_redis_url() -> str:
    return f"redis://127.0.0.1:{unused_port()}/0?socket_connect_timeout=1"


def test_an_unreachable_store_answers_503_by_default(
    dead_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(dead_redis_url)
    app.set_cookie("session_id", factory_of(app).cookie_value("A" * 43))
    with caplog.at_level(logging.ERROR, logger="pyramid_kvs.session"):
        app.get("/show", status=503)
        assert "session store unavailable" in caplog.text
        # a new session's first write fails after the view ran: the 503 replaces it
        fresh = make_app(dead_redis_url)
        response = fresh.get("/set/a/1", status=503)
        assert cookie_of(response) is None
        assert "not saved" in caplog.text
    assert fresh.get("/nothing").json == {"ok": True}  # no session, no store


def test_an_unreachable_store_can_give_empty_sessions(dead_redis_url: str) -> None:
    app = make_app(dead_redis_url, on_unavailable="empty")
    app.set_cookie("session_id", factory_of(app).cookie_value("A" * 43))
    response = app.get("/set/a/1")
    assert response.json["data"] == {"a": 1}
    assert cookie_of(response) is None  # nothing was saved: nothing to point to


# -- expiry -------------------------------------------------------------------------------------


def test_sessions_expire_after_ttl_idle_seconds(backend_url: str) -> None:
    # memcached's clock ticks in whole seconds: an item given n seconds lives
    # between n - 1 and n of them.  The times below hold for every store.
    app = make_app(backend_url, ttl="3")
    app.get("/set/a/1")
    time.sleep(1.5)
    assert app.get("/show").json["data"] == {"a": 1}  # a read resets the idle timeout
    time.sleep(1.75)  # past the first timeout, within the reset one
    assert app.get("/show").json["data"] == {"a": 1}
    time.sleep(3.1)  # past the timeout again, with no read in between
    assert app.get("/show").json["new"] is True


def test_the_lifetime_cap(backend_url: str) -> None:
    app = make_app(backend_url, lifetime="100")
    factory = factory_of(app)
    now = [1_000_000.0]
    factory.clock = lambda: now[0]
    first = cookie_of(app.get("/set/a/1"))
    now[0] += 60
    assert app.get("/show").json == {"data": {"a": 1}, "new": False, "created": 1_000_000.0}
    assert factory.write_ttl(1_000_000.0, now[0]) == 40  # capped by the lifetime left
    now[0] += 41
    expired = app.get("/set/b/2")
    assert expired.json["data"] == {"b": 2} and expired.json["new"] is True
    assert cookie_of(expired) not in (None, first)


def test_write_ttl_is_the_idle_timeout_capped_by_the_lifetime() -> None:
    settings = parse_session({"kvs.session.ttl": "300", "kvs.session.lifetime": "1000"})
    assert settings is not None
    factory = SessionFactory(settings, MemoryStore(), json_codec())
    assert factory.write_ttl(0, 10) == 300
    assert factory.write_ttl(0, 900) == 100
    assert factory.write_ttl(0, 2000) == 1


def json_codec() -> Any:
    from pyramid_kvs.codecs import get_codec

    return get_codec("json")


@pytest.mark.parametrize("backend", ["redis"])
def test_writes_carry_the_capped_expiry(backend: str, backend_url: str) -> None:
    app = make_app(backend_url, ttl="300", lifetime="100")
    cookie = cookie_of(app.get("/set/a/1"))
    assert cookie is not None
    key = "session::" + factory_of(app).storage_key(cookie.partition(".")[0])
    client = redis.Redis.from_url(backend_url)
    assert 95 <= client.ttl(key) <= 100
    client.close()


# -- concurrency -------------------------------------------------------------------------------


def test_overlapping_requests_changing_different_keys_keep_both(backend_url: str) -> None:
    app = make_app(backend_url)
    cookie = cookie_of(app.get("/set/start/1"))
    assert cookie is not None
    both_loaded = threading.Barrier(2, timeout=10)

    def slow_set(request: Any) -> dict[str, Any]:
        session = request.session
        assert session["start"] == 1  # loaded before either request saves
        both_loaded.wait()
        session[request.matchdict["key"]] = request.matchdict["key"]
        return {}

    config = Configurator(registry=app.app.registry)
    config.add_route("slow", "/slow/{key}")
    config.add_view(slow_set, route_name="slow", renderer="json")
    config.commit()
    errors: list[BaseException] = []

    def client(key: str) -> None:
        try:
            own = TestApp(app.app)
            own.set_cookie("session_id", cookie)
            own.get(f"/slow/{key}")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(key,)) for key in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert app.get("/show").json["data"] == {"start": 1, "left": "left", "right": "right"}


# -- the prefetch seam for the rate limiter ------------------------------------------------------


@pytest.mark.parametrize("backend", SERVERS)
def test_prefetch_loads_the_session_in_another_components_batch(
    backend: str, backend_url: str
) -> None:
    app = make_app(backend_url)
    warm(app)
    app.get("/set/a/1")
    other = session_store(app).with_prefix("ratelimit::")
    other.incr("hits", ttl=60)  # a counter that exists: one command on memcached too
    seen: dict[str, Any] = {}

    def limited(request: Any) -> dict[str, Any]:
        with count_round_trips() as trips, other.batch() as batch:
            hits = batch.incr("hits", ttl=60)
            seen["queued"] = prefetch_session(request, batch)
        seen["batch"] = trips.total
        with count_round_trips() as trips:
            seen["data"] = dict(request.session)
        seen["session"] = trips.total
        seen["hits"] = hits.value
        seen["again"] = prefetch_session(request, other.batch())  # already loaded
        return {}

    config = Configurator(registry=app.app.registry)
    config.add_route("limited", "/limited")
    config.add_view(limited, route_name="limited", renderer="json")
    config.commit()
    app.get("/limited")
    expected_batch = 1 if backend == "redis" else 2  # memcached has no pipelines
    assert seen == {
        "queued": True,
        "batch": expected_batch,
        "data": {"a": 1},
        "session": 0,
        "hits": 2,
        "again": False,
    }
    assert get_components(app.app.registry).session_factory.settings.store.identity[0] == backend  # type: ignore[union-attr]


def test_prefetch_declines_what_it_cannot_use(backend_url: str) -> None:
    app = make_app(backend_url)
    store = session_store(app)

    def request_with(cookie: str | None) -> Any:
        request = _request(app)
        if cookie is not None:
            request.cookies["session_id"] = cookie
        return request

    assert prefetch_session(request_with(None), store.batch()) is False  # no session id
    assert prefetch_session(request_with("tampered"), store.batch()) is False
    valid = factory_of(app).cookie_value("A" * 43)
    assert prefetch_session(request_with(valid), MemoryStore().batch()) is False  # another client
    request = request_with(valid)
    batch = store.batch()
    assert prefetch_session(request, batch) is True
    assert len(batch) == 1
    assert prefetch_session(request, store.batch()) is False  # queued once
    # a batch that never runs: the session loads itself
    assert request.session.new is True


def test_prefetch_without_sessions_configured() -> None:
    config = apps.configure({"kvs.cache.url": "memory://"})
    config.commit()
    request = _request(TestApp(config.make_wsgi_app()))
    cache = get_components(config.registry).cache
    assert cache is not None
    assert prefetch_session(request, cache.store.batch()) is False


def test_the_testing_include_mocks_the_session_store() -> None:
    from pyramid_kvs.testing import mock_store

    config = apps.configure({"kvs.session": '{"kvs": "redis"}'}, include="pyramid_kvs.testing")
    views(config)
    app = TestApp(config.make_wsgi_app())
    app.get("/set/a/1")
    assert app.get("/show").json["data"] == {"a": 1}
    assert len(list(mock_store(config.registry, "session").scan())) == 1
    with pytest.raises(LookupError, match="cache"):
        mock_store(config.registry, "cache")


@pytest.mark.parametrize("created", [b"nan", b"inf", b"-inf", b"1e999", b"\xff"])
def test_a_creation_time_that_is_not_a_time_gives_a_fresh_session(
    backend_url: str, created: bytes
) -> None:
    app = make_app(backend_url, lifetime="100")
    cookie = cookie_of(app.get("/set/a/1"))
    assert cookie is not None
    key = factory_of(app).storage_key(cookie.partition(".")[0])
    session_store(app).replace_record(key, {"__created__": created, "a": b"1"}, 60)
    response = app.get("/set/b/2")
    assert response.json["data"] == {"b": 2} and response.json["new"] is True
    assert cookie_of(response) not in (None, "", cookie)


def test_work_follows_what_the_view_used_not_the_session_size() -> None:
    app = make_app("memory://")
    factory = factory_of(app)
    cookie = factory.cookie_value("C" * 43)
    fields = factory.encode_record({f"k{i}": i for i in range(1000)}, 1.0)
    session_store(app).replace_record(factory.storage_key("C" * 43), fields, 60)
    calls = {"loads": 0, "dumps": 0}
    codec = factory.codec

    class Counting:
        name = codec.name

        def loads(self, data: bytes) -> Any:
            calls["loads"] += 1
            return codec.loads(data)

        def dumps(self, value: Any) -> bytes:
            calls["dumps"] += 1
            return codec.dumps(value)

    factory.codec = Counting()
    app.set_cookie("session_id", cookie)
    assert app.get("/set/k5/%22five%22").json["data"]["k5"] == "five"  # show() lists all
    calls.update(loads=0, dumps=0)
    config = Configurator(registry=app.app.registry)
    config.add_route("one", "/one")

    def one(request: Any) -> dict[str, Any]:
        request.session["k7"] = 7
        return {"k1": request.session["k1"]}

    config.add_view(one, route_name="one", renderer="json")
    config.commit()
    assert app.get("/one").json == {"k1": 1}
    assert calls == {"loads": 1, "dumps": 1}  # k1 read (a number: not compared); k7 set


def test_vary_merges_with_the_views_own_ignoring_case() -> None:
    from pyramid.response import Response

    from pyramid_kvs.vary import add_vary

    fresh = Response()
    add_vary(fresh, ["X-Token", "x-token", "Cookie"])
    assert fresh.headers.getall("Vary") == ["X-Token, Cookie"]
    add_vary(fresh, ["cookie", "Accept-Language"])
    assert fresh.headers.getall("Vary") == ["X-Token, Cookie, Accept-Language"]
    views = Response()
    views.vary = ("Accept",)
    add_vary(views, ["ACCEPT", "Cookie"])
    assert views.headers.getall("Vary") == ["Accept, Cookie"]
    nothing = Response()
    add_vary(nothing, [])
    assert "Vary" not in nothing.headers


# -- reading the session cookie (session.cookie_value) ---------------------------------

_cookie_names = st.text(
    alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=8
)
_token_values = st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=50)


@given(
    pairs=st.lists(st.tuples(_cookie_names, _token_values), max_size=6),
    ours=_token_values,
    where=st.integers(min_value=0, max_value=6),
    spaces=st.sampled_from(["; ", ";", " ; "]),
)
def test_the_session_cookie_reads_as_webob_reads_it(
    pairs: list[tuple[str, str]], ours: str, where: int, spaces: str
) -> None:
    """Headers as browsers send them: the value WebOb's full parse gives."""
    from pyramid.request import Request as PyramidRequest

    from pyramid_kvs.cookies import cookie_value

    pairs.insert(min(where, len(pairs)), ("session_id", ours))
    header = spaces.join(f"{name}={value}" for name, value in pairs)
    request = PyramidRequest.blank("/", headers={"Cookie": header})
    assert cookie_value(request.environ, "session_id") == request.cookies.get("session_id")


#: what a session cookie can hold: an id, signed or not, or a 1.x id
_ACCEPTABLE = re.compile(r"[A-Za-z0-9_-]{43}(?:\.[A-Za-z0-9_-]{43})?|[0-9a-f]{40}")


@given(
    before=st.text(max_size=60),
    value=st.text(max_size=100),
    after=st.text(max_size=60),
)
def test_any_cookie_header_gives_webobs_value_or_no_acceptable_one(
    before: str, value: str, after: str
) -> None:
    """Whatever the header: WebOb's value, or one no session cookie can hold."""
    from pyramid.request import Request as PyramidRequest

    from pyramid_kvs.cookies import cookie_value

    header = f"{before}session_id={value}{after}"
    request = PyramidRequest.blank("/")
    request.environ["HTTP_COOKIE"] = header.encode("utf-8").decode("latin-1")
    try:
        found = cookie_value(request.environ, "session_id")
    except UnicodeDecodeError:
        found = None
    try:
        expected = request.cookies.get("session_id")
    except UnicodeDecodeError:
        expected = None
    if found != expected:
        assert found is None or not _ACCEPTABLE.fullmatch(found)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"cookie_secure": "true", "cookie_samesite": "None", "cookie_domain": "example.org"},
        {"cookie_httponly": "false", "cookie_path": "/app", "cookie_samesite": "Strict"},
    ],
)
def test_the_prebuilt_set_cookie_header_is_webobs(options: dict[str, str]) -> None:
    from pyramid.response import Response

    settings = {"kvs.session.url": "memory://", "kvs.session.secret": "s" * 32}
    settings |= {f"kvs.session.{name}": value for name, value in options.items()}
    config = apps.configure(settings)
    config.commit()
    factory = get_components(config.registry).session_factory
    assert factory is not None and factory.set_cookie_parts is not None
    value = factory.cookie_value(factory.new_id())
    prebuilt = Response()
    prebuilt.headerlist.append(
        ("Set-Cookie", factory.set_cookie_parts[0] + value + factory.set_cookie_parts[1])
    )
    webob = Response()
    s = factory.settings
    webob.set_cookie(
        s.key_name, value, path=s.cookie_path, domain=s.cookie_domain, secure=s.cookie_secure,
        httponly=s.cookie_httponly, samesite=s.cookie_samesite,
    )  # fmt: skip
    assert prebuilt.headers.getall("Set-Cookie") == webob.headers.getall("Set-Cookie")


def test_reading_plain_values_encodes_nothing_at_save(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only values that can change in place are compared when the response leaves: a
    string or a number read is not encoded again; a list read is, and its change kept."""

    def read(request: Any) -> dict[str, Any]:
        session = request.session
        session["cart"].append(session["user"] + str(session["visits"]))
        return {}

    config = apps.configure(
        {"kvs.session.url": "memory://", "kvs.session.secret": "s" * 32},
        lambda c: apps.json_view(c, "read", read),
    )
    config.commit()
    factory = get_components(config.registry).session_factory
    assert factory is not None
    session_id = factory.new_id()
    fields = factory.encode_record({"user": "ada", "visits": 3, "cart": []}, time.time())
    factory.store.replace_record(factory.storage_key(session_id), fields, 300)
    encoded: list[Any] = []
    codec = factory.codec
    original = codec.dumps
    monkeypatch.setattr(codec, "dumps", lambda value: encoded.append(value) or original(value))
    app = TestApp(config.make_wsgi_app())
    app.set_cookie("session_id", factory.cookie_value(session_id))
    app.get("/read")
    assert encoded == [["ada3"]]
    record = factory.store.load_record(factory.storage_key(session_id), None)
    assert record is not None and record.fields["cart"] == b'["ada3"]'
