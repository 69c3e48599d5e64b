"""``pkvs``, on applications loaded from ``.ini`` files, against the suite's Redis and memcached.

The commands run in-process through ``main(argv)``; one test runs the installed
console script as a subprocess.  Data is put in the stores through the components
of an application built with the same settings, as the application would.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pyramid.request import Request

import apps
from pyramid_kvs import get_components
from pyramid_kvs.components import Components
from pyramid_kvs.scripts.commands import ExitCode, json_safe
from pyramid_kvs.scripts.pkvs import build_parser, main
from pyramid_kvs.storable import PerlObject
from servers import unused_port

SECRET = "a-pkvs-test-secret-of-32-characters-or-more"
TESTS = Path(__file__).resolve().parent


def write_ini(path: Path, settings: dict[str, str], factory: str = "main") -> str:
    lines = ["[app:main]", f"use = call:pkvs_app:{factory}"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


class Pkvs:
    """``pkvs`` on one application's settings; each call returns (status, stdout, stderr)."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                 settings: dict[str, str]) -> None:  # fmt: skip
        self.settings = settings
        self.ini = write_ini(tmp_path / "app.ini", settings)
        self.capsys = capsys
        self._components: Components | None = None

    @property
    def components(self) -> Components:
        """The components of an application with the same settings: what it stored."""
        if self._components is None:
            self._components = get_components(apps.committed(dict(self.settings)).registry)
        return self._components

    def __call__(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        self.capsys.readouterr()
        old_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            status = main([self.ini, *argv])
        finally:
            sys.stdin = old_stdin
        out, err = self.capsys.readouterr()
        return status, out, err


@pytest.fixture
def on_redis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str, memcached_address: str
) -> Pkvs:
    """Cache, sessions and rate limiter on Redis; Perl sessions in memcached."""
    return Pkvs(tmp_path, capsys, {
        "kvs.cache.url": redis_url,
        "kvs.session.url": redis_url,
        "kvs.session.secret": SECRET,
        "kvs.ratelimit.limits": "5/hour",
        "kvs.perlsess.url": "memcached://" + memcached_address,
        "kvs.perlsess.cookie_name": "CGISESSID",
        "kvs.perlsess.max_size": "1000",
        "test.login_limit": "2/hour",
    })  # fmt: skip


# -- ping ------------------------------------------------------------------------------------


def test_ping_reports_each_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str, memcached_address: str
) -> None:
    pkvs = Pkvs(tmp_path, capsys, {
        "kvs.cache.url": redis_url,
        "kvs.perlsess.url": redis_url,
        "kvs.session.url": "memcached://" + memcached_address,
        "kvs.ratelimit.url": "memory://",
    })  # fmt: skip
    status, out, _ = pkvs("ping")
    assert status == ExitCode.OK
    lines = out.splitlines()
    address = redis_url.removeprefix("redis://").removesuffix("/0")
    assert lines[0].startswith(f"cache, perlsess: redis {address}: up, ")
    assert " ms, version " in lines[0]
    assert lines[1].startswith(f"session: memcached {memcached_address}: up, ")
    assert lines[2] == "ratelimit: memory (in-process): up"


def test_a_store_down_has_its_own_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    pkvs = Pkvs(tmp_path, capsys, {
        "kvs.cache.url": f"redis://127.0.0.1:{unused_port()}/0",
        "kvs.session.url": redis_url,
    })  # fmt: skip
    status, out, _ = pkvs("ping")
    assert status == ExitCode.UNAVAILABLE
    assert out.splitlines()[0].startswith("cache: redis: DOWN (redis: ")
    assert ": up, " in out.splitlines()[1]
    status, _, err = pkvs("cache", "get", "answer")
    assert status == ExitCode.UNAVAILABLE
    assert err.startswith("pkvs: the store is unavailable: redis: ")


# -- session ---------------------------------------------------------------------------------


def seed_session(components: Components, data: dict[str, Any]) -> tuple[str, str]:
    """A session stored as a save stores it: (its id, the cookie value the client holds)."""
    factory = components.session_factory
    assert factory is not None
    session_id = factory.new_id()
    fields = factory.encode_record(data, 1_700_000_000.0)
    factory.store.replace_record(factory.storage_key(session_id), fields, 300)
    return session_id, factory.cookie_value(session_id)


def test_session_shows_a_session_as_json(on_redis: Pkvs) -> None:
    session_id, cookie = seed_session(on_redis.components, {"user_id": 7, "cart": ["book"]})
    status, out, _ = on_redis("session", "--", cookie)  # an id may start with -
    assert status == ExitCode.OK
    assert json.loads(out) == {
        "session": session_id[:6] + "...",
        "transport": "cookie",
        "created": "2023-11-14T22:13:20+00:00",
        "data": {"user_id": 7, "cart": ["book"]},
    }
    assert session_id not in out  # the id is a credential
    # the bare id, without its signature; and from standard input
    assert on_redis("session", "--", session_id)[1] == out
    assert on_redis("session", "-", stdin=cookie + "\n")[1] == out


def test_session_tells_a_foreign_value_from_an_unknown_session(on_redis: Pkvs) -> None:
    session_id, cookie = seed_session(on_redis.components, {"a": 1})
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    status, out, err = on_redis("session", "--", tampered)
    assert (status, out) == (ExitCode.USAGE, "")
    assert "not a session cookie's value" in err and session_id not in err
    status, _, err = on_redis("session", "--", "-" + "x" * 42)  # a well-formed id, unknown
    assert status == ExitCode.NOT_FOUND
    assert "no session" in err


def test_session_of_pyramid_kvs_1_and_one_that_does_not_decode(on_redis: Pkvs) -> None:
    factory = on_redis.components.session_factory
    assert factory is not None
    old_id = "0123456789abcdef0123456789abcdef01234567"  # 1.x: 40 hex digits, unsigned
    factory.store.set(old_id, b'{"user_id": 3}')
    status, out, _ = on_redis("session", old_id)
    assert status == ExitCode.OK
    shown = json.loads(out)
    assert shown["data"] == {"user_id": 3} and shown["format"].startswith("pyramid_kvs 1.x")

    session_id, cookie = seed_session(on_redis.components, {"a": 1})
    factory.store.update_record(factory.storage_key(session_id), {"a": b"\xff{"}, (), 300)
    status, _, err = on_redis("session", "--", cookie)
    assert status == ExitCode.STORE_ERROR and "does not decode as json" in err


def test_session_by_header_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    pkvs = Pkvs(tmp_path, capsys, {
        "kvs.session.url": redis_url,
        "kvs.session.session_type": "header",
        "kvs.session.key_name": "X-Auth-Token",
    })  # fmt: skip
    factory = pkvs.components.session_factory
    assert factory is not None
    token = "api-token-of-a-client"
    factory.store.replace_record(
        factory.storage_key(token), factory.encode_record({"scope": "read"}, time.time()), 300
    )
    status, out, _ = pkvs("session", token)
    assert status == ExitCode.OK
    shown = json.loads(out)
    assert (shown["transport"], shown["data"]) == ("header x-auth-token", {"scope": "read"})


# -- perlsess --------------------------------------------------------------------------------


def test_perlsess_shows_a_perl_session_with_its_bytes_escaped(on_redis: Pkvs) -> None:
    reader = on_redis.components.perlsess
    assert reader is not None
    session_id = "0123456789abcdef0123456789abcdef"
    reader.write(session_id, {"user": "alice", "nick": b"caf\xe9", "roles": ["admin"]}, ttl=60)
    status, out, _ = on_redis("perlsess", session_id)
    assert status == ExitCode.OK
    shown = json.loads(out)
    assert shown["data"] == {"user": "alice", "nick": {"bytes": "caf\\xe9"}, "roles": ["admin"]}
    assert (shown["session"], shown["flags"], shown["expired"]) == ("012345...", 1, False)
    assert shown["bytes"] == len(reader.store.get(session_id) or b"")
    assert session_id not in out

    assert on_redis("perlsess", "not a session id")[0] == ExitCode.USAGE
    status, _, err = on_redis("perlsess", "f" * 32)
    assert status == ExitCode.NOT_FOUND and "ffffff..." in err and "f" * 32 not in err
    reader.store.set("g" * 32, b"not storable")
    status, _, err = on_redis("perlsess", "g" * 32)
    assert status == ExitCode.STORE_ERROR and "unreadable" in err
    reader.store.set("h" * 32, b"x" * (reader.settings.max_size + 1))
    status, _, err = on_redis("perlsess", "h" * 32)
    assert status == ExitCode.STORE_ERROR and "more than max_size" in err


def test_json_safe_shows_what_json_cannot_hold() -> None:
    assert json_safe({b"k\x00": (1, PerlObject("My::Class", {"a": b"\\"}))}) == {
        "k\\x00": [1, {"type": "PerlObject", "class_name": "My::Class",
                       "value": {"a": {"bytes": "\\x5c"}}}],
    }  # fmt: skip
    assert json_safe(Ellipsis) == {"repr": "Ellipsis"}


# -- ratelimit -------------------------------------------------------------------------------


def test_ratelimit_shows_a_holder_without_counting(on_redis: Pkvs) -> None:
    app = apps.make_app(dict(on_redis.settings), extra_environ={"REMOTE_ADDR": "192.0.2.1"})
    app.get("/", status=404)
    app.get("/", status=404)
    for _ in range(2):  # looking counts nothing
        status, out, _ = on_redis("ratelimit", "ip:192.0.2.1")
        assert status == ExitCode.OK
        lines = out.splitlines()
        assert lines[0] == "ip:192.0.2.1: algorithm fixed, redis store"
        assert lines[1].startswith("  default: 5 per 3600 s, 3 remaining, resets in ")
        assert lines[2] == "  a request now: allowed"


def test_ratelimit_by_session_and_by_route(on_redis: Pkvs) -> None:
    _, cookie = seed_session(on_redis.components, {"a": 1})
    app = apps.make_app(dict(on_redis.settings))
    app.set_cookie("session_id", cookie)
    for _ in range(5):
        app.get("/", status=404)
    status, out, _ = on_redis("ratelimit", f"session:{cookie}")  # session:... never starts with -
    assert status == ExitCode.OK
    assert out.startswith("session:")
    assert "0 remaining" in out and "full: retry after" in out
    assert out.splitlines()[-1] == "  a request now: refused (429)"
    assert cookie not in out

    status, out, _ = on_redis("ratelimit", f"session:{cookie}", "--route", "login")
    assert "  view: 2 per 3600 s, 2 remaining" in out


def test_ratelimit_without_limits_to_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkvs = Pkvs(tmp_path, capsys, {"kvs.ratelimit.limits": "none", "kvs.ratelimit.holder": "ip"})
    status, _, err = pkvs("ratelimit", "ip:192.0.2.1")
    assert status == ExitCode.USAGE and "no limit applies to the application" in err


def test_ratelimit_refuses_a_holder_the_limiter_does_not_count(on_redis: Pkvs) -> None:
    for holder in ("session:not-a-valid-cookie", "userid:ada", "header:x", "nothing", "ip:"):
        status, out, err = on_redis("ratelimit", holder)
        assert (status, out) == (ExitCode.USAGE, ""), holder
        assert err.startswith("pkvs: ")


def test_ratelimit_by_userid_and_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for holder, given in (("userid", "userid:ada"), ("header:X-Api-Key", "header:k-123")):
        settings = {"kvs.ratelimit.limits": "5/hour", "kvs.ratelimit.holder": holder}
        status, out, err = Pkvs(tmp_path, capsys, settings)("ratelimit", given)
        assert status == ExitCode.OK
        assert "5 remaining" in out
        # the memory store of pkvs' process is not the application's
        assert "note: the ratelimit store is in-process (memory)" in err


# -- cache -----------------------------------------------------------------------------------


def test_cache_get_delete_and_list(on_redis: Pkvs) -> None:
    cache = on_redis.components.cache
    assert cache is not None
    cache.set("user:1", {"name": "Ada"})
    cache.set("user:2", [1, 2])
    cache.set("other", "x")
    status, out, _ = on_redis("cache", "get", "user:1")
    assert (status, json.loads(out)) == (ExitCode.OK, {"name": "Ada"})
    assert on_redis("cache", "list", "user:*")[1] == "user:1\nuser:2\n"
    assert on_redis("cache", "list")[1] == "other\nuser:1\nuser:2\n"
    assert on_redis("cache", "delete", "user:1")[:2] == (ExitCode.OK, "deleted user:1\n")
    status, _, err = on_redis("cache", "delete", "user:1")
    assert (status, err) == (ExitCode.NOT_FOUND, "pkvs: user:1: not cached\n")
    assert on_redis("cache", "get", "user:1")[0] == ExitCode.NOT_FOUND
    cache.store.set("garbled", b"\xff not json")
    status, _, err = on_redis("cache", "get", "garbled")
    assert status == ExitCode.STORE_ERROR and "does not decode as json" in err


def test_memcached_cannot_list_nor_flush(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], memcached_address: str
) -> None:
    pkvs = Pkvs(tmp_path, capsys, {"kvs.cache.url": "memcached://" + memcached_address})
    status, _, err = pkvs("cache", "list")
    assert status == ExitCode.UNSUPPORTED and "cannot list its keys" in err
    status, _, err = pkvs("flush", "cache", "--yes")
    assert status == ExitCode.UNSUPPORTED and "cannot list its keys" in err


# -- flush -----------------------------------------------------------------------------------


def test_flush_deletes_the_components_keys_only_once_confirmed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    pkvs = Pkvs(tmp_path, capsys, {
        "kvs.cache.url": redis_url,
        "kvs.cache.key_prefix": "app::",
        "kvs.session.url": redis_url,
        "kvs.session.key_prefix": "app::session::",  # under the cache's prefix: kept
    })  # fmt: skip
    cache = pkvs.components.cache
    assert cache is not None
    for number in range(3):
        cache.set(f"k{number}", number)
    seed_session(pkvs.components, {"a": 1})
    foreign = cache.store.with_prefix("")
    foreign.set("someone-else", b"1")

    status, _, err = pkvs("flush", "cache", stdin="n\n")
    assert status == ExitCode.ABORTED
    assert "delete 3 keys under 'app::' from the redis store 127.0.0.1:" in err
    assert len(cache.list_keys()) == 4  # its 3, and the session's under app::session::

    status, out, _ = pkvs("flush", "cache", stdin="y\n")
    assert (status, out) == (ExitCode.OK, "deleted 3 keys under 'app::'\n")
    assert foreign.get("someone-else") == b"1"
    (session_key,) = cache.list_keys()
    assert session_key.startswith("session::")

    assert pkvs("flush", "cache", "--yes")[1] == "nothing under 'app::'\n"
    status, out, _ = pkvs("flush", "session", "--yes")
    assert (status, out) == (ExitCode.OK, "deleted 1 key under 'app::session::'\n")


def test_a_component_without_prefix_is_never_flushed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    pkvs = Pkvs(tmp_path, capsys, {"kvs.perlsess.url": redis_url, "kvs.perlsess.key_prefix": ""})
    status, _, err = pkvs("flush", "perlsess", "--yes")
    assert status == ExitCode.UNSUPPORTED and "no key prefix" in err


# -- errors, help ------------------------------------------------------------------------------


def test_each_failure_has_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    pkvs = Pkvs(tmp_path, capsys, {"kvs.cache.url": redis_url})
    for command in (
        ["session", "x"],
        ["perlsess", "x"],
        ["ratelimit", "ip:1"],
        ["flush", "session"],
    ):
        status, _, err = pkvs(*command)
        assert status == ExitCode.NOT_CONFIGURED, command
        assert "component is not configured" in err

    assert main([str(tmp_path / "missing.ini"), "ping"]) == ExitCode.BAD_CONFIG
    assert "cannot load the application" in capsys.readouterr().err
    bad = write_ini(tmp_path / "bad.ini", {"kvs.cache.ttl": "-5"})
    assert main([bad, "ping"]) == ExitCode.BAD_CONFIG
    assert "kvs.cache.ttl: expected a positive number" in capsys.readouterr().err
    bare = write_ini(tmp_path / "bare.ini", {}, factory="without_pyramid_kvs")
    assert main([bare, "ping"]) == ExitCode.BAD_CONFIG
    assert "does not include pyramid_kvs" in capsys.readouterr().err

    assert main([pkvs.ini, "frobnicate"]) == ExitCode.USAGE
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
    assert main([pkvs.ini, "flush", "everything"]) == ExitCode.USAGE
    assert main([pkvs.ini]) == ExitCode.USAGE


@pytest.mark.parametrize(
    "command", [[], ["ping"], ["session"], ["perlsess"], ["ratelimit"], ["cache"],
                ["cache", "get"], ["cache", "delete"], ["cache", "list"], ["flush"]],
)  # fmt: skip
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app.ini", *command, "--help"] if command else ["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("usage: pkvs")
    assert len(out.splitlines()) > 3


def test_the_parser_names_every_command() -> None:
    usage = build_parser().format_help()
    for command in ("ping", "session", "perlsess", "ratelimit", "cache", "flush"):
        assert command in usage


# -- the installed script ------------------------------------------------------------------------


def test_the_installed_script_runs(on_redis: Pkvs) -> None:
    script = shutil.which("pkvs", path=str(Path(sys.executable).parent))
    assert script is not None, "pkvs is not installed: make test installs the package"
    cache = on_redis.components.cache
    assert cache is not None
    cache.set("greeting", {"text": "héllo"})
    environment = {**os.environ, "PYTHONPATH": str(TESTS)}
    found = subprocess.run(
        [script, on_redis.ini, "cache", "get", "greeting"],
        capture_output=True, text=True, env=environment, timeout=60, check=False,
    )  # fmt: skip
    assert (found.returncode, json.loads(found.stdout)) == (0, {"text": "héllo"})


def test_holder_requests_read_like_a_client_request(on_redis: Pkvs) -> None:
    """A session the application made through a real request is found by its cookie."""

    def remember(request: Request) -> dict[str, Any]:
        request.session["seen"] = True
        return {}

    app = apps.make_app(dict(on_redis.settings), lambda c: apps.json_view(c, "remember", remember))
    app.get("/remember")
    cookie = app.cookies["session_id"]
    status, out, _ = on_redis("session", cookie)
    assert status == ExitCode.OK and json.loads(out)["data"] == {"seen": True}


# -- several servers ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["redis+cluster", "redis+sentinel"])
def test_every_command_on_several_servers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str, backend_url: str
) -> None:
    """A cluster's keys are listed, counted and flushed on every master; a Sentinel
    service's on its current master; a holder's limits read from its node."""
    pkvs = Pkvs(tmp_path, capsys, {
        "kvs.cache.url": backend_url,
        "kvs.session.url": backend_url,
        "kvs.session.secret": SECRET,
        "kvs.ratelimit.url": backend_url,
        "kvs.ratelimit.limits": "5/hour",
    })  # fmt: skip
    status, out, _ = pkvs("ping")
    assert status == ExitCode.OK
    assert out.startswith(f"cache, session, ratelimit: {backend} 127.0.0.1:")
    assert ": up, " in out and ", version " in out

    cache = pkvs.components.cache
    assert cache is not None
    names = [f"user:{number}" for number in range(12)]  # enough to reach every master
    cache.set_many({name: number for number, name in enumerate(names)})
    assert pkvs("cache", "list", "user:*")[1] == "".join(f"{n}\n" for n in sorted(names))
    assert json.loads(pkvs("cache", "get", "user:7")[1]) == 7

    _, cookie = seed_session(pkvs.components, {"user_id": 7})
    assert json.loads(pkvs("session", "--", cookie)[1])["data"] == {"user_id": 7}

    app = apps.make_app(dict(pkvs.settings), extra_environ={"REMOTE_ADDR": "192.0.2.1"})
    app.get("/", status=404)
    try:
        out = pkvs("ratelimit", "ip:192.0.2.1")[1]
        assert out.splitlines()[1].startswith("  default: 5 per 3600 s, 4 remaining")
    finally:
        get_components(app.app.registry).close()

    status, out, _ = pkvs("flush", "cache", "--yes")
    assert (status, out) == (ExitCode.OK, "deleted 12 keys under 'cache::'\n")
    assert cache.list_keys() == []
    assert json.loads(pkvs("session", "--", cookie)[1])["data"] == {"user_id": 7}
