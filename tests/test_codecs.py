"""Codecs on hostile bytes: ``loads`` ends in a value or a ``ValueError``, nothing else.

And the pickle codec: signed with a secret (a planted pickle is never unpickled),
unsigned without one, with a start-up warning naming the risk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from webtest import TestApp

from apps import committed
from pyramid_kvs import Cache, get_components
from pyramid_kvs.codecs import (
    SIGNED_PICKLE_MAGIC,
    JSONCodec,
    MsgpackCodec,
    PickleCodec,
    UnsignedPickleWarning,
    get_codec,
)

SECRET = "a-cache-secret-of-at-least-32-characters"
OTHER_SECRET = "another-secret-of-at-least-32-characters"
DEEP = 100_000


#: every codec whose ``loads`` may safely see arbitrary bytes (unsigned pickle runs them)
DECODABLE = {
    "json": JSONCodec(),
    "msgpack": MsgpackCodec(),
    "signed pickle": PickleCodec(SECRET, "kvs.cache"),
}


# -- arbitrary bytes --------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
plausible_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(str.encode),  # mostly valid UTF-8, sometimes JSON
    st.recursive(  # real JSON and msgpack, then cut or extended
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=20,
    ).flatmap(
        lambda value: st.sampled_from(
            [codec.dumps(value) for codec in DECODABLE.values()]
        ).flatmap(lambda data: st.integers(0, len(data)).map(lambda cut: data[:cut]))
    ),
)


@pytest.mark.parametrize("name", list(DECODABLE))
@settings(max_examples=400, deadline=None)
@given(data=plausible_bytes)
def test_any_bytes_decode_or_raise_a_value_error(name: str, data: bytes) -> None:
    # a ValueError is the only failure the contract allows; anything else fails here
    with contextlib.suppress(ValueError):
        DECODABLE[name].loads(data)


# -- structures built to hurt -------------------------------------------------------------

HOSTILE: dict[str, tuple[str, bytes]] = {
    "json arrays 100 000 deep": ("json", b"[" * DEEP + b"]" * DEEP),
    "json objects 100 000 deep": ("json", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    "json deep and unterminated": ("json", b"[{" * DEEP),
    "json integer of 5000 digits": ("json", b"9" * 5000),
    "json integer of 5000 digits, nested": ("json", b'{"_SESSION_ATIME":' + b"9" * 5000 + b"}"),
    "msgpack arrays 100 000 deep": ("msgpack", b"\x91" * DEEP + b"\x00"),
    "msgpack maps 100 000 deep": ("msgpack", b"\x81\x00" * DEEP + b"\x00"),
    "msgpack array of 2**32-1 items announced": ("msgpack", b"\xdd\xff\xff\xff\xff"),
    "msgpack map with a list for a key": ("msgpack", b"\x81\x91\x01\x01"),
    "msgpack bad timestamp": ("msgpack", b"\xd7\xff" + b"\xff" * 8),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_structures_are_value_errors(case: str) -> None:
    name, data = HOSTILE[case]
    with pytest.raises(ValueError) as error:
        get_codec(name).loads(data)
    assert type(error.value) is ValueError  # wrapped, with the codec's own message
    assert str(error.value).lower().startswith(f"not valid {name}")


def test_json_still_reads_what_it_writes() -> None:
    codec = JSONCodec()
    value = {"brackets": "[[[{{{", "nested": [[[[{"a": [1.5, None, True]}]]]], "big": 10**100}
    assert codec.loads(codec.dumps(value)) == value
    assert codec.loads(b"1e999") == float("inf")  # a float out of range is infinite


# -- pickle: signed with a secret ------------------------------------------------------------

MARKER: list[Path] = []


class Planted:
    """A payload an attacker puts in the store: unpickling it makes a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def test_signed_pickles_round_trip_and_carry_a_mac() -> None:
    codec = PickleCodec(SECRET, "kvs.cache")
    value = {"when": (1, 2), "set": {3}, "bytes": b"\x00"}
    data = codec.dumps(value)
    assert data.startswith(SIGNED_PICKLE_MAGIC)
    assert pickle.loads(data[len(SIGNED_PICKLE_MAGIC) + 32 :]) == value  # MAC, then pickle
    assert codec.loads(data) == value


def planted_variants(tmp_path: Path) -> dict[str, bytes]:
    """The planted payload as every kind of forgery: none must reach pickle.loads."""
    raw = pickle.dumps(Planted(tmp_path / "pwned"))
    signed_elsewhere = PickleCodec(OTHER_SECRET, "kvs.cache").dumps(Planted(tmp_path / "pwned"))
    other_purpose = PickleCodec(SECRET, "kvs.session").dumps(Planted(tmp_path / "pwned"))
    own = PickleCodec(SECRET, "kvs.cache").dumps("harmless")
    return {
        "unsigned": raw,
        "magic without a MAC": SIGNED_PICKLE_MAGIC + raw,
        "a zero MAC": SIGNED_PICKLE_MAGIC + b"\x00" * 32 + raw,
        "another secret's MAC": signed_elsewhere,
        "another component's MAC": other_purpose,
        "a valid MAC, another payload": own[: len(SIGNED_PICKLE_MAGIC) + 32] + raw,
        "too short": SIGNED_PICKLE_MAGIC + b"\x01",
    }


def test_a_planted_pickle_is_refused_before_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpickled: list[bytes] = []
    real_loads = pickle.loads
    monkeypatch.setattr(pickle, "loads", lambda data: unpickled.append(data) or real_loads(data))
    codec = PickleCodec(SECRET, "kvs.cache")
    for name, data in planted_variants(tmp_path).items():
        with pytest.raises(ValueError, match="refused without unpickling"):
            codec.loads(data)
        assert unpickled == [], name
    assert not (tmp_path / "pwned").exists()


def test_without_a_secret_pickle_works_as_the_original_add_on() -> None:
    codec = PickleCodec()
    assert codec.dumps({"a": (1,)}) == pickle.dumps({"a": (1,)}, pickle.HIGHEST_PROTOCOL)
    assert codec.loads(pickle.dumps({"a": (1,)})) == {"a": (1,)}
    with pytest.raises(ValueError, match="not a valid pickle"):
        codec.loads(PickleCodec(SECRET).dumps(1))  # a signed value is no plain pickle


# -- wiring: settings, secrets, the start-up warning -------------------------------------


def build(settings: dict[str, Any]) -> Configurator:
    return committed(settings)


@pytest.mark.parametrize("component", ["cache", "session"])
def test_pickle_without_a_secret_warns_at_start_up(
    component: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        pytest.warns(UnsignedPickleWarning, match=f"kvs.{component}.secret") as warned,
        caplog.at_level(logging.WARNING, "pyramid_kvs"),
    ):
        build({f"kvs.{component}.url": "memory://", f"kvs.{component}.codec": "pickle"})
    assert "can run code in this application" in str(warned[0].message)
    assert f"kvs.{component}.codec = pickle without kvs.{component}.secret" in caplog.text


@pytest.mark.parametrize("codec", ["json", "msgpack", "pickle"])
def test_no_warning_with_a_secret_or_another_codec(codec: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsignedPickleWarning)
        build(
            {
                "kvs.cache.url": "memory://",
                "kvs.cache.codec": codec,
                "kvs.cache.secret": SECRET if codec == "pickle" else "",
                "kvs.session.url": "memory://",
                "kvs.session.codec": codec,
                "kvs.session.secret": OTHER_SECRET if codec == "pickle" else "",
            }
        )


def test_each_component_signs_with_its_own_secret() -> None:
    config = build(
        {
            "kvs.cache.url": "memory://",
            "kvs.cache.codec": "pickle",
            "kvs.cache.secret": SECRET,
            "kvs.session.url": "memory://",
            "kvs.session.codec": "pickle",
            "kvs.session.secret": SECRET,  # even the same secret: not the same key
        }
    )
    kvs = get_components(config.registry)
    assert kvs.cache is not None and kvs.session_factory is not None
    cache_codec, session_codec = kvs.cache.codec, kvs.session_factory.codec
    assert cache_codec.loads(cache_codec.dumps([1])) == [1]
    assert session_codec.loads(session_codec.dumps([1])) == [1]
    assert cache_codec.loads(PickleCodec(SECRET, "kvs.cache").dumps(2)) == 2
    assert session_codec.loads(PickleCodec(SECRET, "kvs.session").dumps(2)) == 2
    with pytest.raises(ValueError, match="does not verify"):
        session_codec.loads(cache_codec.dumps([1]))
    with pytest.raises(ValueError, match="does not verify"):
        cache_codec.loads(session_codec.dumps([1]))


@pytest.mark.parametrize("value", ["short", "x" * 31, "   "])
def test_a_bad_cache_secret_fails_at_start_up_without_echoing_it(value: str) -> None:
    settings = {"kvs.cache.url": "memory://", "kvs.cache.secret": value}
    if not value.strip():  # blank means none: accepted
        build(settings)
        return
    with pytest.raises(ConfigurationError) as failure:
        build(settings)
    message = str(failure.value)
    assert "kvs.cache.secret: expected a random string of at least 32 characters" in message
    assert value not in message


def test_the_cache_secret_in_the_original_json_form() -> None:
    config = build({"kvs.cache": f'{{"codec": "pickle", "secret": "{SECRET}"}}'})
    cache = get_components(config.registry).cache
    assert cache is not None
    cache["k"] = {"a": (1,)}
    assert cache["k"] == {"a": (1,)}
    assert cache.store.get("k").startswith(SIGNED_PICKLE_MAGIC)  # type: ignore[union-attr]


# -- against a real Redis ---------------------------------------------------------------------


def redis_cache(redis_url: str, **flat: str) -> Cache:
    settings = {"kvs.cache.url": redis_url, **{f"kvs.cache.{k}": v for k, v in flat.items()}}
    cache = get_components(build(settings).registry).cache
    assert cache is not None
    return cache


def test_a_pickle_planted_in_redis_is_never_unpickled(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = redis_cache(redis_url, codec="pickle", secret=SECRET)
    client = redis.Redis.from_url(redis_url)
    for name, data in planted_variants(tmp_path).items():
        client.set("cache::planted", data)  # written by someone who reached the store
        with caplog.at_level(logging.WARNING, "pyramid_kvs.cache"):
            assert cache.get("planted", "miss") == "miss", name
            assert "planted" not in cache
            assert cache.get_many(["planted"]) == {}
            assert cache.get_or_set("planted", lambda: "fresh") == "fresh"
            client.set("cache::planted", data)
            assert cache.pop("planted", "miss") == "miss"
        assert "does not decode as pickle" in caplog.text
        assert not (tmp_path / "pwned").exists(), name
    client.close()


def test_a_signed_pickle_round_trips_through_redis(redis_url: str) -> None:
    cache = redis_cache(redis_url, codec="pickle", secret=SECRET)
    value = {"when": (1, 2), "set": {3}}
    cache["k"] = value
    assert cache["k"] == value
    stored = redis.Redis.from_url(redis_url).get("cache::k")
    assert stored is not None and stored.startswith(SIGNED_PICKLE_MAGIC)


def test_without_a_secret_the_planted_pickle_runs(redis_url: str, tmp_path: Path) -> None:
    """The documented risk of pickle without a secret, shown (and why it warns)."""
    with pytest.warns(UnsignedPickleWarning):
        cache = redis_cache(redis_url, codec="pickle")
    client = redis.Redis.from_url(redis_url)
    client.set("cache::planted", pickle.dumps(Planted(tmp_path / "pwned")))
    cache.get("planted")
    assert (tmp_path / "pwned").is_dir()
    client.close()


def test_deep_json_in_redis_is_a_logged_miss_on_every_read_path(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = redis_cache(redis_url)
    client = redis.Redis.from_url(redis_url)
    deep = b"[" * DEEP + b"]" * DEEP
    client.set("cache::deep", deep)
    with caplog.at_level(logging.WARNING, "pyramid_kvs.cache"):
        assert cache.get("deep", "miss") == "miss"
        assert cache["deep"] is None
        assert "deep" not in cache
        assert cache.get_many(["deep", "absent"]) == {}
        assert cache.get_or_set("deep", lambda: "fresh") == "fresh"
        client.set("cache::deep", deep)
        assert cache.pop("deep", "miss") == "miss"
    assert "does not decode as json: not valid JSON: nested too deeply" in caplog.text
    client.close()


def test_deep_json_in_a_stored_session_is_a_fresh_session_not_a_500(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = Configurator(
        settings={"kvs.session.url": redis_url, "kvs.session.secret": OTHER_SECRET}
    )
    config.include("pyramid_kvs")

    def write(request: Any) -> dict[str, Any]:
        request.session["user"] = "ada"
        return {}

    def show(request: Any) -> dict[str, Any]:
        return {"data": dict(request.session)}

    for name, view in (("write", write), ("show", show)):
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name, renderer="json")
    app = TestApp(config.make_wsgi_app())
    app.get("/write")
    assert app.get("/show").json == {"data": {"user": "ada"}}
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("session::*")
    client.hset(key, "user", b"[" * DEEP + b"]" * DEEP)
    with caplog.at_level(logging.WARNING, "pyramid_kvs.session"):
        assert app.get("/show").json == {"data": {}}
    assert "does not decode as json" in caplog.text
    client.close()


def test_no_session_store_key_can_reveal_the_pickle_key() -> None:
    """Session store keys are HMAC(secret, id), public to anyone reading the store."""
    config = build(
        {
            "kvs.session.url": "memory://",
            "kvs.session.codec": "pickle",
            "kvs.session.secret": SECRET,
        }
    )
    factory = get_components(config.registry).session_factory
    assert factory is not None
    label = "pyramid_kvs pickle codec v1\x00kvs.session"
    assert not factory.valid_token(label)  # the NUL: no id or token can be the label
    pickle_key = factory.codec._key  # type: ignore[attr-defined]
    assert factory.storage_key(label) == "{" + pickle_key.hex() + "}"  # what it would reveal


def test_pickled_sessions_are_signed_with_the_session_secret(redis_url: str) -> None:
    config = Configurator(
        settings={
            "kvs.session.url": redis_url,
            "kvs.session.codec": "pickle",
            "kvs.session.secret": OTHER_SECRET,
        }
    )
    config.include("pyramid_kvs")

    def write(request: Any) -> dict[str, Any]:
        request.session["cart"] = {"items": ("book", "pen")}
        return {}

    def show(request: Any) -> dict[str, Any]:
        return {"cart": repr(request.session.get("cart"))}

    for name, view in (("write", write), ("show", show)):
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name, renderer="json")
    app = TestApp(config.make_wsgi_app())
    app.get("/write")
    assert app.get("/show").json == {"cart": "{'items': ('book', 'pen')}"}  # a tuple: pickle
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("session::*")
    stored = client.hget(key, "cart")
    assert stored is not None and stored.startswith(SIGNED_PICKLE_MAGIC)
    assert PickleCodec(OTHER_SECRET, "kvs.session").loads(stored) == {"items": ("book", "pen")}
    client.close()
