"""request.perlsess against sessions real Perl stacks wrote into real memcached and Redis.

``tests/perl/perl_sessions.pl`` writes sessions with Cache::Memcached,
Cache::Memcached::Fast, Plack::Middleware::Session (over Plack::Session::Store::Cache),
CGI::Session (serializer storable, over memcached or Redis), Redis.pm and
Plack::Session::Store::File, and reads back the sessions Python writes.  Perl is a
hard requirement: without it these tests fail.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import secrets
import subprocess
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

import apps
from pyramid_kvs.components import get_components
from pyramid_kvs.perlsess import (
    FLAG_COMPRESSED,
    FLAG_STORABLE,
    FLAG_UTF8,
    PerlSession,
    PerlSessionError,
    PerlSessionReader,
    apply_cgi_session_expiry,
    decode_session,
    decompress,
    parse_perlsess,
)
from pyramid_kvs.storable import StorableError, nfreeze, perl_number, thaw
from pyramid_kvs.stores import create_store
from pyramid_kvs.stores.memcached import FlaggedBytes
from roundtrips import count_round_trips
from servers import Server, start_memcached, unused_port

PERL_SCRIPT = Path(__file__).parent / "perl" / "perl_sessions.pl"
PREFIX = "perlsess::"
#: what the Perl side keeps in a session: text beyond Latin-1, a list, a number
SESSION = {"user": "alice", "name": "Zoë €", "roles": ["admin", "dev"], "visits": 3}
#: compressible enough for Cache::Memcached's 20 % savings rule
NOTES = "the quick brown fox jumps over the lazy dog; " * 100
COOKIES = {"plack_memcached": "plack_session", "cgi_session_memcached": "CGISESSID"}
COOKIES["cgi_session_redis"] = "CGISESSID"


def perl(action: str, stack: str, **fields: Any) -> dict[str, Any]:
    """Run one write or read of tests/perl/perl_sessions.pl and return its JSON answer."""
    request = {"action": action, "stack": stack, "prefix": PREFIX, **fields}
    try:
        proc = subprocess.run(
            ["perl", str(PERL_SCRIPT)],
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=60,
        )
    except FileNotFoundError:  # a missing perl is a setup error, not a skip
        pytest.fail("perl is required: run `make test`, which installs it", pytrace=False)
    if proc.returncode:
        pytest.fail(f"perl {stack} failed: {proc.stderr.decode(errors='replace')}", pytrace=False)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def show_session(request: Request) -> Response:
    session = request.perlsess
    body = {"session_id": session.session_id, "data": dict(session), "expired": session.expired}
    return Response(
        json.dumps(body, default=repr), content_type="application/json", charset="utf-8"
    )


def show_twice(request: Request) -> Response:
    session = request.perlsess
    first = request.perlsess["user"] if "user" in session else None
    return Response(json.dumps([first, len(session), sorted(session), session.expired]))


def make_app(settings: dict[str, Any]) -> TestApp:
    return apps.make_app(settings, perl_views)


def perl_views(config: Configurator) -> None:
    config.add_route("show", "/")
    config.add_view(show_session, route_name="show")
    config.add_route("twice", "/twice")
    config.add_view(show_twice, route_name="twice")
    config.add_route("untouched", "/untouched")
    config.add_view(lambda request: Response("ok"), route_name="untouched")


def memcached_app(address: str, cookie_name: str = "session_id", **extra: Any) -> TestApp:
    """The original JSON form, with its original defaults spelled out."""
    options = {
        "kvs": "memcache",
        "kvs_kwargs": {"servers": [address]},
        "key_prefix": PREFIX,
        "cookie_name": cookie_name,
        "codec": "storable",
        **extra,
    }
    return make_app({"kvs.perlsess": json.dumps(options)})


def redis_app(url: str, cookie_name: str = "session_id", **extra: Any) -> TestApp:
    """Flat keys."""
    settings = {"kvs.perlsess.url": url, "kvs.perlsess.cookie_name": cookie_name}
    settings.update({f"kvs.perlsess.{key}": value for key, value in extra.items()})
    return make_app(settings)


def reader_of(app: TestApp) -> PerlSessionReader:
    reader = get_components(app.app.registry).perlsess
    assert reader is not None
    return reader


def read(app: TestApp, cookie_name: str, session_id: str) -> dict[str, Any]:
    app.set_cookie(cookie_name, session_id)
    return app.get("/").json  # type: ignore[no-any-return]


def user_data(data: dict[str, Any]) -> dict[str, Any]:
    """A session without CGI::Session's own ``_SESSION_*`` fields."""
    return {key: value for key, value in data.items() if not key.startswith("_SESSION_")}


# -- sessions Perl wrote ---------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "compressed"])
@pytest.mark.parametrize(
    "stack",
    ["cache_memcached", "cache_memcached_fast", "plack_memcached", "cgi_session_memcached"],
)
def test_sessions_perl_wrote_into_memcached(
    memcached_address: str, stack: str, compressed: bool
) -> None:
    data = {**SESSION, "notes": NOTES} if compressed else SESSION
    extra = {"compress_threshold": 100} if compressed else {}
    session_id = perl("write", stack, memcached=memcached_address, data=data, **extra)[
        "session_id"
    ]
    cookie = COOKIES.get(stack, "session_id")
    app = memcached_app(memcached_address, cookie)

    body = read(app, cookie, session_id)

    assert body["session_id"] == session_id
    assert user_data(body["data"]) == data
    assert body["expired"] is False
    stored = reader_of(app).store.get(session_id)
    assert isinstance(stored, FlaggedBytes)
    assert bool(stored.flags & FLAG_COMPRESSED) is compressed  # the path really taken
    if stack.startswith("cgi_session"):
        assert stored.flags & FLAG_STORABLE == 0  # CGI::Session stores a plain string
        assert body["data"]["_SESSION_ID"] == session_id
    else:
        assert stored.flags & FLAG_STORABLE


@pytest.mark.parametrize(
    ("stack", "stored_as"),
    [
        ("redis_nfreeze", b"\x05\x0b"),  # nfreeze: network order, Storable 2.11
        ("redis_base64", b"BQs"),  # Base64 of the same
        ("redis_pst0_file", b"pst0"),  # a Plack::Session::Store::File file
        ("cgi_session_redis", b"\x04\x0b"),  # CGI::Session's freeze: native order
    ],
)
def test_sessions_perl_wrote_into_redis(redis_url: str, stack: str, stored_as: bytes) -> None:
    address = redis_url.split("//")[1].split("/")[0]
    session_id = perl("write", stack, redis=address, data=SESSION)["session_id"]
    cookie = COOKIES.get(stack, "session_id")
    app = redis_app(redis_url, cookie)

    body = read(app, cookie, session_id)

    assert body["session_id"] == session_id
    assert user_data(body["data"]) == SESSION
    stored = reader_of(app).store.get(session_id)
    assert stored is not None and stored.startswith(stored_as)
    if stack == "redis_base64":
        assert b"\n" in stored.rstrip(b"\n")  # MIME::Base64 breaks lines every 76 chars


def test_json_sessions_with_the_json_codec(redis_url: str, memcached_address: str) -> None:
    address = redis_url.split("//")[1].split("/")[0]
    session_id = perl("write", "redis_json", redis=address, data=SESSION)["session_id"]
    assert read(redis_app(redis_url, codec="json"), "session_id", session_id)["data"] == SESSION

    session_id = perl(
        "write", "memcached_fast_json_text", memcached=memcached_address, data=SESSION
    )["session_id"]
    app = memcached_app(memcached_address, codec="json")
    stored = reader_of(app).store.get(session_id)
    assert isinstance(stored, FlaggedBytes) and stored.flags == FLAG_UTF8
    assert read(app, "session_id", session_id)["data"] == SESSION


def test_a_json_session_is_not_read_by_the_storable_codec(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    address = redis_url.split("//")[1].split("/")[0]
    session_id = perl("write", "redis_json", redis=address, data=SESSION)["session_id"]
    with caplog.at_level(logging.WARNING, "pyramid_kvs.perlsess"):
        assert read(redis_app(redis_url), "session_id", session_id)["data"] == {}
    assert "not Storable data" in caplog.text


# -- CGI::Session's own expiry ---------------------------------------------------------


def test_cgi_session_expiry_fields_are_honoured_as_perl_does(memcached_address: str) -> None:
    data = {"user": "alice", "otp": "123456"}
    session_id = perl(
        "write",
        "cgi_session_memcached",
        memcached=memcached_address,
        data=data,
        expire="+60s",
        param_expire={"otp": "+10s"},
    )["session_id"]
    app = memcached_app(memcached_address, "CGISESSID")
    reader = reader_of(app)

    assert user_data(read(app, "CGISESSID", session_id)["data"]) == data
    # 30 seconds later: the parameter's 10 seconds are over, the session's 60 are not
    reader.clock = lambda: time.time() + 30
    later = read(app, "CGISESSID", session_id)
    assert user_data(later["data"]) == {"user": "alice"}
    assert later["expired"] is False
    # 61 seconds later the whole session has expired
    reader.clock = lambda: time.time() + 61
    assert read(app, "CGISESSID", session_id) == {
        "session_id": session_id,
        "data": {},
        "expired": True,
    }
    # and CGI::Session itself agrees on both (reading last: Perl updates the atime)
    at_61 = perl(
        "read", "cgi_session_memcached", memcached=memcached_address, session_id=session_id,
        time_offset=61,
    )  # fmt: skip
    assert at_61["is_expired"] is True


def test_cgi_session_parameter_expiry_matches_perl(redis_url: str) -> None:
    address = redis_url.split("//")[1].split("/")[0]
    written = perl(
        "write", "cgi_session_redis", redis=address, data={"user": "bob", "otp": "1"},
        param_expire={"otp": "+10s"},
    )  # fmt: skip
    session_id = written["session_id"]
    app = redis_app(redis_url, "CGISESSID")
    reader_of(app).clock = lambda: time.time() + 30
    python_view = user_data(read(app, "CGISESSID", session_id)["data"])
    perl_view = perl(
        "read", "cgi_session_redis", redis=address, session_id=session_id, time_offset=30
    )
    assert python_view == perl_view["data"] == {"user": "bob"}


# -- sessions Python wrote, read by Perl ----------------------------------------------


@pytest.mark.parametrize("stack", ["cache_memcached", "cache_memcached_fast"])
def test_perl_cache_clients_read_what_python_wrote(memcached_address: str, stack: str) -> None:
    reader = reader_of(memcached_app(memcached_address))
    session_id = secrets.token_hex(16)
    reader.write(session_id, SESSION, ttl=60)

    answer = perl("read", stack, memcached=memcached_address, session_id=session_id)

    assert answer["ref"] == "HASH"  # thawed by the client itself: flag 1 was set
    assert answer["data"] == SESSION


def test_plack_reads_a_session_python_wrote(memcached_address: str) -> None:
    reader = reader_of(memcached_app(memcached_address, "plack_session"))
    session_id = secrets.token_hex(20)  # Plack::Session::State accepts 40 hex digits
    reader.write(session_id, SESSION)

    answer = perl("read", "plack_memcached", memcached=memcached_address, session_id=session_id)

    assert answer["data"] == SESSION


@pytest.mark.parametrize("backend", ["memcached", "redis"])
def test_cgi_session_reads_a_session_python_wrote(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "memcached":
        address = request.getfixturevalue("memcached_address")
        app = memcached_app(address, "CGISESSID")
        target = {"memcached": address}
    else:
        url = request.getfixturevalue("redis_url")
        app = redis_app(url, "CGISESSID")
        target = {"redis": url.split("//")[1].split("/")[0]}
    session_id = secrets.token_hex(16)
    now = int(time.time())
    cgi_fields = {"_SESSION_ID": session_id, "_SESSION_CTIME": now, "_SESSION_ATIME": now}
    # CGI::Session thaws the string itself: no Storable flag
    reader_of(app).write(session_id, {**cgi_fields, **SESSION}, memcached_flags=0)

    answer = perl("read", f"cgi_session_{backend}", session_id=session_id, **target)

    assert answer["id"] == session_id and answer["is_new"] is False
    assert answer["data"] == SESSION


# -- bad values and forged cookies: empty, logged, never a 500 ---------------------------


def _bomb() -> bytes:
    return gzip.compress(b"\x00" * (16 * 1024 * 1024), compresslevel=9)


BAD_VALUES: dict[str, tuple[bytes, int]] = {
    "garbage": (b"definitely not a session", 0),
    "truncated": (nfreeze(SESSION)[:-7], 0),
    "trailing bytes": (nfreeze(SESSION) + b"\x00", 0),
    "not a hash": (nfreeze(["alice"]), FLAG_STORABLE),
    "corrupt gzip": (b"\x1f\x8b\x08\x00garbage", FLAG_COMPRESSED | FLAG_STORABLE),
    "truncated gzip": (gzip.compress(nfreeze(SESSION))[:-12], FLAG_COMPRESSED | FLAG_STORABLE),
    "decompression bomb": (_bomb(), FLAG_COMPRESSED | FLAG_STORABLE),
    "unknown flags": (nfreeze(SESSION), 0x100),
    "bad Base64": (b"BQsDAAAAAx!!", 0),
    "bad UTF-8 text": (b"\xff\xfe", FLAG_UTF8),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
@pytest.mark.parametrize("backend", ["memcached", "redis"])
def test_bad_values_give_an_empty_session_and_a_warning(
    backend: str, case: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    value, flags = BAD_VALUES[case]
    if backend == "memcached":
        app = memcached_app(request.getfixturevalue("memcached_address"))
    else:
        app = redis_app(request.getfixturevalue("redis_url"))
        if flags:  # Redis keeps no flags: the bytes alone must be rejected
            value = value if case != "unknown flags" else b"\x05\x0c" + b"\xff" * 8
    stored = FlaggedBytes(value)
    stored.flags = flags
    session_id = secrets.token_hex(16)
    reader_of(app).store.set(session_id, stored)

    with caplog.at_level(logging.WARNING, "pyramid_kvs.perlsess"):
        body = read(app, "session_id", session_id)

    assert body["data"] == {} and body["session_id"] == session_id
    assert "is unreadable" in caplog.text
    assert session_id not in caplog.text  # a session id is a credential


FORGED = [
    "../../../etc/passwd",
    "a" * 129,
    "id with spaces",
    "id\twith\ttab",
    "perlsess::other",
    "<script>alert(1)</script>",
    "caf\u00e9",
    "%00",
    "\u00ff" * 10,
]


@pytest.mark.parametrize("cookie", FORGED)
def test_forged_cookies_are_rejected_before_the_store_is_asked(
    memcached_address: str, cookie: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = memcached_app(memcached_address)
    app.get("/untouched")
    header = f'session_id="{cookie}"'  # a quoted cookie value carries any character
    with count_round_trips() as trips, caplog.at_level(logging.WARNING):
        body = app.get("/", headers={"Cookie": header}).json
    assert body == {"session_id": None, "data": {}, "expired": False}
    assert trips.total == 0
    # malformed, or (the non-ASCII ones, sent as Latin-1 bytes) not even UTF-8
    assert "perlsess: ignored a" in caplog.text
    assert cookie not in caplog.text


def test_a_cookie_header_that_is_not_utf8_is_not_a_500(
    memcached_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = memcached_app(memcached_address)
    with caplog.at_level(logging.WARNING):
        body = app.get("/", headers={"Cookie": 'session_id="caf\u00e9"'}).json  # Latin-1
    assert body == {"session_id": None, "data": {}, "expired": False}
    assert "not UTF-8" in caplog.text


def test_a_missing_cookie_or_key_gives_an_empty_session_and_no_warning(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a visitor who never logged in on the Perl side, or whose session expired, is
    # routine: no warning for either, only DEBUG and INFO lines
    app = redis_app(redis_url)
    with caplog.at_level(logging.DEBUG, "pyramid_kvs.perlsess"):
        assert app.get("/").json == {"session_id": None, "data": {}, "expired": False}
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("DEBUG", "perlsess: no session_id cookie: the Perl session is empty")
        ]
        caplog.clear()
        assert read(app, "session_id", "0" * 32)["data"] == {}
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("INFO", "perlsess: no session 000000... in the store")
        ]


def test_an_unreachable_store_gives_an_empty_session_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = redis_app(f"redis://127.0.0.1:{unused_port()}/0")
    with caplog.at_level(logging.WARNING, "pyramid_kvs.perlsess"):
        assert read(app, "session_id", "abc123")["data"] == {}
    assert "store error" in caplog.text


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memcached", "redis"])
def test_one_round_trip_on_first_use_none_when_untouched(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "memcached":
        address = request.getfixturevalue("memcached_address")
        session_id = perl("write", "cache_memcached", memcached=address, data=SESSION)
        app = memcached_app(address)
    else:
        url = request.getfixturevalue("redis_url")
        address = url.split("//")[1].split("/")[0]
        session_id = perl("write", "redis_nfreeze", redis=address, data=SESSION)
        app = redis_app(url)
    reader_of(app).store.ping()  # open the connection outside the count
    app.set_cookie("session_id", session_id["session_id"])

    with count_round_trips() as untouched:
        app.get("/untouched")
    with count_round_trips() as used:
        answer = json.loads(app.get("/twice").text)  # getitem, in, len, iteration, expired

    assert untouched.total == 0
    assert used.total == 1
    assert answer == ["alice", 4, ["name", "roles", "user", "visits"], False]


def test_the_session_loads_lazily() -> None:
    app = make_app({"kvs.perlsess.url": "memory://"})
    reader = reader_of(app)
    reader.write("abc", {"user": "carol"})
    request = Request.blank("/", cookies={"session_id": "abc"})
    request.registry = app.app.registry
    session = reader.for_request(request)
    assert isinstance(session, PerlSession)
    assert session.session_id == "abc" and not session.loaded
    assert session["user"] == "carol" and session.loaded
    assert "carol" in repr(session) and "abc..." in repr(session)


# -- the decoding pipeline, on Perl-made bytes ----------------------------------------


def test_decompress_reads_gzip_and_zlib_and_caps_the_size() -> None:
    blob = nfreeze(SESSION)
    assert decompress(gzip.compress(blob), 1000) == blob
    assert decompress(zlib.compress(blob), 1000) == blob
    with pytest.raises(PerlSessionError, match="max_size"):
        decompress(gzip.compress(blob), len(blob) - 1)
    with pytest.raises(PerlSessionError, match="neither gzip nor zlib"):
        decompress(blob, 1000)


def test_decode_session_reads_every_wrapping(memcached_address: str) -> None:
    written = perl(
        "write", "cache_memcached", memcached=memcached_address,
        data={**SESSION, "notes": NOTES}, compress_threshold=100,
    )  # fmt: skip
    store = create_store("memcached", {"servers": [memcached_address]}).with_prefix(PREFIX)
    perl_bytes = store.get(written["session_id"])
    assert isinstance(perl_bytes, FlaggedBytes)
    assert perl_bytes.flags == FLAG_STORABLE | FLAG_COMPRESSED
    expected = {**SESSION, "notes": NOTES}
    assert decode_session(perl_bytes, perl_bytes.flags) == expected
    storable = gzip.decompress(perl_bytes)
    assert decode_session(storable) == expected
    assert decode_session(b"pst0" + storable) == expected
    assert decode_session(base64.encodebytes(storable)) == expected
    with pytest.raises(PerlSessionError, match="max_size"):
        decode_session(perl_bytes, perl_bytes.flags, max_size=len(storable) - 1)
    with pytest.raises(StorableError):
        decode_session(storable[:-1])
    store.close()


#: stored values built to hurt: deep nesting, numbers of thousands of digits
HOSTILE_VALUES = [
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b'{"_SESSION_ATIME":' + b"9" * 5000 + b"}",
    nfreeze({"_SESSION_ATIME": "9" * 5000, "_SESSION_ETIME": 60}),
    nfreeze({"_SESSION_ATIME": 1000, "_SESSION_EXPIRE_LIST": {"a": "9" * 5000}}),
    b"\x05\x0b" + b"\x04" * 100_000,  # Storable references 100 000 deep
]

stored_bytes = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda tail: nfreeze(SESSION)[:20] + tail),
    st.binary(max_size=200).map(gzip.compress),
    st.binary(max_size=200).map(base64.encodebytes),
    st.sampled_from(HOSTILE_VALUES),
)


@settings(max_examples=300, deadline=None)
@given(
    data=stored_bytes,
    flags=st.integers(min_value=-(2**40), max_value=2**40),
    codec=st.sampled_from(["storable", "json"]),
)
def test_any_stored_bytes_decode_or_raise_a_documented_error(
    data: bytes, flags: int, codec: str
) -> None:
    try:
        session = decode_session(data, flags, codec=codec, max_size=1 << 20)
    except (PerlSessionError, StorableError):  # the only errors, both logged by the reader
        return
    assert isinstance(session, dict)


def test_a_blessed_session_hash_is_read_as_the_hash() -> None:
    from pyramid_kvs.storable import PerlObject

    assert decode_session(nfreeze(PerlObject("My::Session", {"user": "dan"}))) == {"user": "dan"}


def test_cgi_session_expiry_rules() -> None:
    session = {"_SESSION_ATIME": 1000, "_SESSION_ETIME": "60", "a": 1, "b": 2}
    session["_SESSION_EXPIRE_LIST"] = {"a": 10}
    assert apply_cgi_session_expiry(session, 1009) == session
    assert apply_cgi_session_expiry(session, 1010) == {
        "_SESSION_ATIME": 1000, "_SESSION_ETIME": "60", "b": 2, "_SESSION_EXPIRE_LIST": {},
    }  # fmt: skip
    assert apply_cgi_session_expiry(session, 1060) is None
    assert apply_cgi_session_expiry({"a": 1}, 10**10) == {"a": 1}
    # fields out of any clock's range, or not numbers, are ignored rather than fatal
    odd = {"_SESSION_ATIME": 10**400, "_SESSION_ETIME": "soon", "a": 1}
    assert apply_cgi_session_expiry(odd, 10**10) == odd
    odd = {"_SESSION_ATIME": "1000", "_SESSION_ETIME": 10**400}
    assert apply_cgi_session_expiry(odd, 10**10) == odd


HOSTILE_CGI_FIELDS: list[dict[str, Any]] = [
    {"_SESSION_ATIME": "9" * 5000, "_SESSION_ETIME": 60},
    {"_SESSION_ATIME": 1000, "_SESSION_ETIME": "9" * 5000},
    {"_SESSION_ATIME": "-" + "9" * 5000, "_SESSION_ETIME": "1" * 5000},
    {"_SESSION_ATIME": 2**63 - 1, "_SESSION_ETIME": 2**63 - 1},
    {"_SESSION_ATIME": -(2**63), "_SESSION_ETIME": 2**64 - 1},
    {"_SESSION_ATIME": float("nan"), "_SESSION_ETIME": 60},
    {"_SESSION_ATIME": 1000, "_SESSION_ETIME": float("inf")},
    {"_SESSION_ATIME": float("-inf"), "_SESSION_ETIME": 60},
    {"_SESSION_ATIME": 1000, "_SESSION_ETIME": float("-inf")},
    {"_SESSION_ATIME": float("-inf"), "_SESSION_ETIME": float("nan")},
    {"_SESSION_ATIME": 1.7976931348623157e308, "_SESSION_ETIME": 1.7976931348623157e308},
    {"_SESSION_ATIME": "NaN", "_SESSION_ETIME": "Inf"},
    {"_SESSION_ATIME": 1000, "_SESSION_EXPIRE_LIST": ["a", "b"]},
    {"_SESSION_ATIME": 1000, "_SESSION_EXPIRE_LIST": "a"},
    {"_SESSION_ATIME": 1000, "_SESSION_EXPIRE_LIST": None},
    {"_SESSION_ATIME": 1000, "_SESSION_EXPIRE_LIST": {"a": "9" * 5000, "b": [1], "c": None}},
    {"_SESSION_ATIME": 1000, "_SESSION_EXPIRE_LIST": {"a": float("nan"), "b": 2**64 - 1}},
    {"_SESSION_ATIME": 1000, "_SESSION_EXPIRE_LIST": {"a": float("-inf"), "b": "-Inf"}},
    {"_SESSION_ATIME": [1000], "_SESSION_ETIME": {"a": 1}},
    {"_SESSION_ATIME": True, "_SESSION_ETIME": b"60"},
]


@pytest.mark.parametrize("fields", HOSTILE_CGI_FIELDS, ids=repr)
def test_hostile_cgi_session_fields_are_ignored_not_fatal(fields: dict[str, Any]) -> None:
    session = {**fields, "a": 1, "b": 2}
    # a field that is no finite number is treated as absent: nothing expires
    assert apply_cgi_session_expiry(session, 2000) == session
    # and through the reader, from Storable bytes, as a request would read them
    store = create_store("memory", {}).with_prefix(PREFIX)
    settings = parse_perlsess({"kvs.perlsess.url": "memory://"})
    assert settings is not None
    reader = PerlSessionReader(store, settings, clock=lambda: 2000)
    store.set("abc", nfreeze(session))
    loaded, expired = reader.load("abc")
    assert expired is False and loaded["a"] == 1 and loaded["b"] == 2


def test_numbers_of_thousands_of_digits_stay_text() -> None:
    digits = "9" * 5000
    assert perl_number(digits) == digits
    assert perl_number("-" + digits) == "-" + digits
    assert perl_number("1" * 25) == "1" * 25  # beyond 64 bits in any case
    assert perl_number("18446744073709551615") == 2**64 - 1  # the largest UV still reads
    assert thaw(nfreeze([digits]), numeric_strings=True) == [digits]
    with pytest.raises(StorableError, match="too large"):
        nfreeze(10**5000)  # a Python int Perl cannot hold


def test_the_reader_never_raises_even_on_a_bug(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app({"kvs.perlsess.url": "memory://"})
    reader = reader_of(app)

    def broken(key: str, max_size: int) -> bytes:
        raise TypeError("a bug in a custom store")

    reader.store.get_bounded = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, "pyramid_kvs.perlsess"):
        assert read(app, "session_id", "abcdef123") == {
            "session_id": "abcdef123",
            "data": {},
            "expired": False,
        }
    assert "unexpected error" in caplog.text and "TypeError" in caplog.text
    assert "abcdef123" not in caplog.text


session_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["9" * 5000, "NaN", "-Inf", "1e+308", "0123"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
cgi_sessions = st.fixed_dictionaries(
    {},
    optional={
        "_SESSION_ATIME": session_values,
        "_SESSION_ETIME": session_values,
        "_SESSION_EXPIRE_LIST": session_values
        | st.dictionaries(st.sampled_from(["a", "b", "user"]), session_values),
        "user": session_values,
        "a": session_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    stored=st.one_of(
        stored_bytes,
        cgi_sessions.map(nfreeze),
        cgi_sessions.map(lambda session: json.dumps(session).encode()),
    ),
    codec=st.sampled_from(["storable", "json"]),
    now=st.floats(allow_nan=False) | st.integers(0, 2**40),
)
def test_the_reader_never_raises_whatever_the_store_holds(
    stored: bytes, codec: str, now: float
) -> None:
    settings = parse_perlsess({"kvs.perlsess.url": "memory://", "kvs.perlsess.codec": codec})
    assert settings is not None
    store = create_store("memory", {}).with_prefix(PREFIX)
    store.set("abc", stored)
    session, expired = PerlSessionReader(store, settings, clock=lambda: now).load("abc")
    assert isinstance(session, dict) and isinstance(expired, bool)


# -- max_size: refused before the value is downloaded ----------------------------------

BIG = 20 * 1024 * 1024
MAX_SIZE = 1024 * 1024


@pytest.fixture(scope="module")
def big_memcached() -> Iterator[Server]:
    """A memcached whose item limit (32 MB) lets it hold a 20 MB value."""
    server = start_memcached(max_item_size="32m")
    yield server
    server.stop()


def peak_memory(call: Callable[[], Any]) -> int:
    """The most memory Python allocated while *call* ran, in bytes."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_a_value_over_max_size_is_refused_before_it_is_downloaded(
    backend: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    if backend == "redis":
        app = redis_app(request.getfixturevalue("redis_url"), max_size=str(MAX_SIZE))
    else:
        address = request.getfixturevalue("big_memcached").address
        app = memcached_app(address, max_size=MAX_SIZE)
    reader = reader_of(app)
    session_id = secrets.token_hex(16)
    reader.store.set(session_id, b"\x05\x0b" + b"x" * (BIG - 2))
    reader.store.ping()  # connected outside the measures

    downloaded = peak_memory(lambda: reader.store.get(session_id))
    with count_round_trips() as trips, caplog.at_level(logging.WARNING, "pyramid_kvs.perlsess"):
        refused = peak_memory(lambda: reader.load(session_id))
    app.set_cookie("session_id", session_id)
    body = app.get("/").json

    assert downloaded >= BIG  # what reading it would cost: the measure sees it
    assert refused < MAX_SIZE  # the refusal costs less than even an allowed value
    assert trips.total == 1
    assert f"{BIG} bytes exceed max_size={MAX_SIZE} (not read)" in caplog.text
    assert body == {"session_id": session_id, "data": {}, "expired": False}
    # a session within max_size still reads, on the same client
    reader.write(session_id, SESSION)
    assert read(app, "session_id", session_id)["data"] == SESSION


def test_a_value_over_max_size_in_memory_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app({"kvs.perlsess.url": "memory://", "kvs.perlsess.max_size": "100"})
    reader_of(app).store.set("abc", nfreeze({"notes": "x" * 200}))
    with caplog.at_level(logging.WARNING, "pyramid_kvs.perlsess"):
        assert read(app, "session_id", "abc")["data"] == {}
    assert "exceed max_size=100 (not read)" in caplog.text


# -- settings --------------------------------------------------------------------------


def test_settings_defaults_are_the_original_ones() -> None:
    parsed = parse_perlsess({"kvs.perlsess": '{"type": "memcached"}'})
    assert parsed is not None
    assert parsed.store.backend == "memcached"
    assert (parsed.key_prefix, parsed.cookie_name, parsed.codec) == (
        "perlsess::",
        "session_id",
        "storable",
    )
    assert parsed.max_size == 1024 * 1024
    assert parse_perlsess({}) is None


def test_flat_keys_win_over_the_json_form() -> None:
    parsed = parse_perlsess(
        {
            "kvs.perlsess": '{"kvs": "redis", "cookie_name": "sid"}',
            "kvs.perlsess.cookie_name": "CGISESSID",
            "kvs.perlsess.codec": "json",
            "kvs.perlsess.max_size": "4096",
        }
    )
    assert parsed is not None
    assert (parsed.store.backend, parsed.cookie_name, parsed.codec, parsed.max_size) == (
        "redis",
        "CGISESSID",
        "json",
        4096,
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cookie_name", "bad name", "kvs.perlsess.cookie_name: expected a cookie name"),
        ("codec", "pickle", "kvs.perlsess.codec: expected one of: storable, json"),
        ("max_size", "0", "kvs.perlsess.max_size: expected a positive whole number"),
        ("key_prefix", "a b", "kvs.perlsess.key_prefix: expected a key prefix"),
        ("ttl", "60", "kvs.perlsess: unknown setting(s) ttl"),
    ],
)
def test_bad_settings_fail_at_start_up(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        make_app({f"kvs.perlsess.{key}": value})
    assert message in str(error.value)


def test_request_perlsess_only_when_configured() -> None:
    config = apps.configure({"kvs.cache.url": "memory://"})
    config.add_route("has", "/")
    config.add_view(lambda request: Response(str(hasattr(request, "perlsess"))), route_name="has")
    assert TestApp(config.make_wsgi_app()).get("/").text == "False"
    app = make_app({"kvs.perlsess.url": "memory://"})
    assert app.get("/untouched").text == "ok"


def test_the_testing_include_gives_a_mock_store() -> None:
    from pyramid_kvs.testing import mock_store

    config = apps.configure(
        {"kvs.perlsess.url": "redis://nowhere:1/0"}, include="pyramid_kvs.testing"
    )
    config.add_route("show", "/")
    config.add_view(show_session, route_name="show")
    app = TestApp(config.make_wsgi_app())
    mock_store(app.app.registry, "perlsess").set("s1", nfreeze({"user": "eve"}))
    app.set_cookie("session_id", "s1")
    assert app.get("/").json["data"] == {"user": "eve"}
