"""What each ``pkvs`` sub-command does, on the components of a loaded application.

The commands go through the components' own code wherever it exists - the session
factory reads a cookie value and loads a session, the rate limiter names a holder
and peeks at its state, the Perl session reader's decoding steps decode - so what
``pkvs`` shows is what a request would see.  Output is plain text or JSON on
standard output; errors are one line on standard error, with an exit status of
their own (``ExitCode``).  A session id given on the command line is never printed
in full: it is a credential.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import IntEnum
from typing import Any, TypeVar

import plaster
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.scripting import prepare

from ..components import COMPONENT_NAMES, Components, get_components
from ..perlsess import SESSION_ID, apply_cgi_session_expiry, decode_session, redact
from ..ratelimit.deriver import ViewPolicies, route_scope, view_policies
from ..ratelimit.limiter import DEFAULT_SCOPE, RateLimiter
from ..session import SessionFactory, SessionRef
from ..stores import Store, StoreError, StoreUnavailable
from ..stores.base import LockingStore

#: a component a command needs
C = TypeVar("C")


class ExitCode(IntEnum):
    """What ``pkvs`` exits with."""

    OK = 0
    #: the key, session or Perl session is not in the store
    NOT_FOUND = 1
    #: the command line is wrong (argparse's own status): unknown command, bad argument
    USAGE = 2
    #: the configuration file cannot be loaded, or the application does not start
    BAD_CONFIG = 3
    #: the component the command needs is not configured
    NOT_CONFIGURED = 4
    #: a store cannot be reached
    UNAVAILABLE = 5
    #: the store cannot do it (list keys on memcached), or not safely
    UNSUPPORTED = 6
    #: the store answered with an error, or holds data that does not decode
    STORE_ERROR = 7
    #: a flush was not confirmed
    ABORTED = 8


class CommandError(Exception):
    """A failure reported in one line, with its exit status."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Application:
    """The loaded application: its components and its registry."""

    components: Components
    registry: Registry


@contextmanager
def loaded(config_uri: str) -> Iterator[Application]:
    """The application of *config_uri*, loaded as ``pshell`` loads it; closed afterwards.

    What ``pyramid.paster.setup_logging`` then ``bootstrap`` do, with one loader:
    finding it reads every installed package's metadata, most of a command's time.
    """
    try:
        loader = plaster.get_loader(config_uri, protocols=["wsgi"])
        loader.setup_logging({"__script__": "pkvs"})
        loader.get_wsgi_app(None, {"__script__": "pkvs"})
        env = prepare()  # the registry of the application just made
    except Exception as exc:  # whatever the file or the application's start-up raises
        raise CommandError(
            f"cannot load the application of {config_uri}: {type(exc).__name__}: {exc}",
            ExitCode.BAD_CONFIG,
        ) from None
    try:
        try:
            components = get_components(env["registry"])
        except RuntimeError:
            raise CommandError(
                f"the application of {config_uri} does not include pyramid_kvs",
                ExitCode.BAD_CONFIG,
            ) from None
        try:
            yield Application(components, env["registry"])
        finally:
            components.close()
    finally:
        env["closer"]()


def run(args: argparse.Namespace) -> ExitCode:
    """Run the sub-command *args* name on the application they name."""
    with loaded(args.config_uri) as application:
        component = getattr(args, "component", None) or args.command
        store = (
            application.components.store_of(component) if component in COMPONENT_NAMES else None
        )
        if isinstance(store, LockingStore):
            print(
                f"pkvs: note: the {component} store is in-process ({store.name}): pkvs sees "
                "its own, not the one of a running application",
                file=sys.stderr,
            )
        return COMMANDS[args.command](args, application)


# -- output ---------------------------------------------------------------------------------


def emit(text: str) -> None:
    """Print *text*; text the terminal cannot take (undecodable key bytes) escaped."""
    sys.stdout.write(text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")


def emit_json(value: Any) -> None:
    emit(json.dumps(json_safe(value), indent=2, ensure_ascii=False, sort_keys=True))


def json_safe(value: Any) -> Any:
    """*value* as JSON can hold it: bytes and Perl values made explicit, never dropped.

    Bytes become ``{"bytes": "..."}`` with everything but printable ASCII escaped
    as in Python (``caf\\xe9``), so binary data is shown without being taken for
    text; dataclasses (Perl objects, references) an object naming their type.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return {"bytes": _escaped(value)}
    if isinstance(value, dict):
        return {_key(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {field.name: json_safe(getattr(value, field.name))
                  for field in dataclasses.fields(value)}  # fmt: skip
        return {"type": type(value).__name__, **fields}
    return {"repr": repr(value)}


def _escaped(data: bytes) -> str:
    return "".join(chr(byte) if 32 <= byte < 127 and byte != 92 else f"\\x{byte:02x}"
                   for byte in data)  # fmt: skip


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return _escaped(key)
    return str(key)


def _read_argument(value: str) -> str:
    """The argument, or a line of standard input for ``-`` (out of the shell's history)."""
    return sys.stdin.readline().strip() if value == "-" else value


def _configured(component: C | None, name: str) -> C:
    """*component* (or its store), which the command needs: an error if it is absent."""
    if component is None:
        raise CommandError(
            f"the {name} component is not configured (no kvs.{name} settings)",
            ExitCode.NOT_CONFIGURED,
        )
    return component


def _component(application: Application, name: str) -> Store:
    return _configured(application.components.store_of(name), name)


# -- ping -----------------------------------------------------------------------------------


def ping(args: argparse.Namespace, application: Application) -> ExitCode:
    """Each store the components use: reachable or not, latency, server, version."""
    components = application.components
    worst = ExitCode.OK
    for store in components.stores.values():
        users = [
            name
            for name in COMPONENT_NAMES
            if (used := components.store_of(name)) is not None and used.shares_client_with(store)
        ]
        prefix = f"{', '.join(users)}: {store.name}"
        try:
            store.ping()  # connects: the latency is measured on the next one
            start = time.perf_counter()
            store.ping()
            latency = (time.perf_counter() - start) * 1000
            info = store.server_info()
        except StoreUnavailable as exc:
            emit(f"{prefix}: DOWN ({exc})")
            worst = max(worst, ExitCode.UNAVAILABLE)
            continue
        except StoreError as exc:
            emit(f"{prefix}: ERROR ({exc})")
            worst = max(worst, ExitCode.STORE_ERROR)
            continue
        where = info.get("server", "")
        if where == "in-process":
            emit(f"{prefix} (in-process): up")
            continue
        version = info.get("version")
        emit(
            f"{prefix} {where}: up, {latency:.2f} ms" + (f", version {version}" if version else "")
        )
    return worst


# -- session --------------------------------------------------------------------------------


def session(args: argparse.Namespace, application: Application) -> ExitCode:
    """A session, as the session factory loads it, as JSON."""
    factory = _configured(application.components.session_factory, "session")
    ref = session_ref(factory, _read_argument(args.value))
    shown = redact(ref.id)
    record, old = factory.load(ref)
    result: dict[str, Any] = {
        "session": shown,
        "transport": "cookie" if ref.header is None else f"header {ref.header}",
    }
    if record is not None:
        try:
            decoded = factory.decode_record(record.fields)
        except ValueError as exc:
            raise CommandError(
                f"session {shown} does not decode as {factory.codec.name}: {exc}",
                ExitCode.STORE_ERROR,
            ) from None
        if decoded is not None:
            created, data = decoded
            result["created"] = _timestamp(created)
            result["data"] = data
            emit_json(result)
            return ExitCode.OK
    if old is not None:
        try:
            result["data"] = factory.codec.loads(old)
        except ValueError as exc:
            raise CommandError(
                f"the 1.x session {shown} does not decode as {factory.codec.name}: {exc}",
                ExitCode.STORE_ERROR,
            ) from None
        result["format"] = "pyramid_kvs 1.x, moved to a 2.0 record on its next request"
        emit_json(result)
        return ExitCode.OK
    print(f"pkvs: no session {shown} in the store", file=sys.stderr)
    return ExitCode.NOT_FOUND


def session_ref(factory: SessionFactory, value: str) -> SessionRef:
    """The session a cookie value (signed or not) or a header token names.

    The session factory reads it from a request carrying it, as it reads a client's.
    A bare id is accepted where the application signs its cookies: the operator
    holding it needs no signature.
    """
    request = Request.blank("/")
    if factory.uses_cookie:
        request.headers["Cookie"] = f"{factory.settings.key_name}={value}"
    else:
        request.headers[factory.settings.key_name] = value
    ref = factory.read_id(request)
    if ref is None and factory.uses_cookie and value.isascii() and "." not in value:
        request.headers["Cookie"] = f"{factory.settings.key_name}={factory.cookie_value(value)}"
        ref = factory.read_id(request)
    if ref is None:
        expected = (
            "a session cookie's value (an id, signed with kvs.session.secret when there is one)"
            if factory.uses_cookie
            else "a session token"
        )
        raise CommandError(f"not {expected} of this application", ExitCode.USAGE)
    return ref


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


# -- perlsess -------------------------------------------------------------------------------


def perlsess(args: argparse.Namespace, application: Application) -> ExitCode:
    """A Perl session, decoded as ``request.perlsess`` decodes it, as JSON."""
    reader = _configured(application.components.perlsess, "perlsess")
    session_id = _read_argument(args.session_id)
    if not SESSION_ID.fullmatch(session_id):
        raise CommandError(
            "not a Perl session id: 1 to 128 letters, digits or _+/=-", ExitCode.USAGE
        )
    shown = redact(session_id)
    settings = reader.settings
    data = reader.store.get_bounded(session_id, settings.max_size)
    if data is None:
        print(f"pkvs: no Perl session {shown} under {settings.key_prefix!r}", file=sys.stderr)
        return ExitCode.NOT_FOUND
    flags = getattr(data, "flags", 0)
    try:
        decoded = decode_session(data, flags, codec=settings.codec, max_size=settings.max_size)
    except ValueError as exc:
        raise CommandError(
            f"Perl session {shown} is unreadable: {exc}", ExitCode.STORE_ERROR
        ) from None
    emit_json({
        "session": shown,
        "bytes": len(data),
        "flags": flags,
        "expired": apply_cgi_session_expiry(decoded, time.time()) is None,
        "data": decoded,
    })  # fmt: skip
    return ExitCode.OK


# -- ratelimit ------------------------------------------------------------------------------

#: what ``pkvs ratelimit`` accepts before the colon
HOLDER_KINDS = ("ip", "session", "userid", "header")


def ratelimit(args: argparse.Namespace, application: Application) -> ExitCode:
    """Where a holder stands against the limits, read without counting a request."""
    limiter = _configured(application.components.ratelimiter, "ratelimit")
    holder = holder_key(limiter, application.registry, args.holder)
    limits, scope = limiter.limits, DEFAULT_SCOPE
    if args.route is not None:
        option = view_policies(application.registry).route_option(args.route)
        applied = (option, DEFAULT_SCOPE if option is None else route_scope(args.route))
        limits, scope = ViewPolicies.limits_of(applied, limiter.limits)
    if not limits:
        where = f"route {args.route}" if args.route else "the application (limits = none)"
        raise CommandError(f"no limit applies to {where}", ExitCode.USAGE)
    outcome = limiter.peek(holder, limits, scope)
    emit(f"{holder}: algorithm {limiter.algorithm}, {limiter.store.name} store")
    for name, state in zip(outcome.names, outcome.states, strict=True):
        limit = state.limit
        line = (
            f"  {name}: {limit.amount} per {limit.window} s, {state.remaining} remaining, "
            f"resets in {state.reset:.1f} s"
        )
        if not state.allowed:
            line += f", full: retry after {state.retry_after:.1f} s"
        emit(line)
    emit("  a request now: " + ("allowed" if outcome.allowed else "refused (429)"))
    return ExitCode.OK


class _HolderRequest(Request):
    """A request carrying only what names a holder (a user id without a policy)."""

    userid: str | None = None

    @property
    def authenticated_userid(self) -> str | None:
        return self.userid


def holder_key(limiter: RateLimiter, registry: Registry, text: str) -> str:
    """The key the limiter counts *text*'s requests under (``ip:ADDRESS``...).

    The limiter's own holder function reads a request carrying what *text* gives,
    so the key is the one requests get.  When it falls back to what a request
    without it gets, the limiter does not count by it: an error.
    """
    kind, colon, value = text.partition(":")
    if not colon or kind not in HOLDER_KINDS or not value:
        raise CommandError(
            "expected a holder as ip:ADDRESS, session:COOKIE_VALUE_OR_TOKEN, userid:USERID "
            "or header:VALUE",
            ExitCode.USAGE,
        )
    value = _read_argument(value)
    holder = limiter.holder_of(_holder_request(limiter, registry, kind, value))
    if holder == limiter.holder_of(_holder_request(limiter, registry, "", "")):
        invalid = (
            " (or it is not a valid session of this application)" if kind == "session" else ""
        )
        raise CommandError(
            f"the limiter does not count requests by {kind}: kvs.ratelimit.holder is "
            f"{limiter.settings.holder}{invalid}; a client without what it counts by is "
            "counted as ip:ADDRESS",
            ExitCode.USAGE,
        )
    return holder


def _holder_request(
    limiter: RateLimiter, registry: Registry, kind: str, value: str
) -> _HolderRequest:
    request: _HolderRequest = _HolderRequest.blank("/", remote_addr=value if kind == "ip" else "")
    request.registry = registry
    sessions = limiter.sessions
    if kind == "userid":
        request.userid = value
    elif kind == "session" and isinstance(sessions, SessionFactory):
        if sessions.uses_cookie:
            request.headers["Cookie"] = f"{sessions.settings.key_name}={value}"
        else:
            request.headers[sessions.settings.key_name] = value
    elif kind == "header" and limiter.settings.holder.startswith("header:"):
        request.headers[limiter.settings.holder.partition(":")[2]] = value
    return request


# -- cache ----------------------------------------------------------------------------------


def cache(args: argparse.Namespace, application: Application) -> ExitCode:
    """``get``, ``delete`` or ``list`` the cache's keys, as ``request.cache`` names them."""
    cached = _configured(application.components.cache, "cache")
    store = cached.store
    if args.action == "list":
        for key in sorted(store.scan(args.pattern)):
            emit(key)
        return ExitCode.OK
    if args.action == "delete":
        if store.delete(args.key):
            emit(f"deleted {args.key}")
            return ExitCode.OK
        print(f"pkvs: {args.key}: not cached", file=sys.stderr)
        return ExitCode.NOT_FOUND
    data = store.get(args.key)
    if data is None:
        print(f"pkvs: {args.key}: not cached", file=sys.stderr)
        return ExitCode.NOT_FOUND
    try:
        value = cached.codec.loads(data)
    except ValueError as exc:
        raise CommandError(
            f"the value of {args.key} does not decode as {cached.codec.name}: {exc}",
            ExitCode.STORE_ERROR,
        ) from None
    emit_json(value)
    return ExitCode.OK


# -- flush ----------------------------------------------------------------------------------

#: keys deleted per batch (one pipeline on Redis)
FLUSH_BATCH = 500


def flush(args: argparse.Namespace, application: Application) -> ExitCode:
    """Delete every key under the component's prefix, listed with ``scan``, after asking.

    Never ``FLUSHDB``: the other keys of the store stay, other components' with
    them - keys under a longer prefix of another component on the same client (a
    cache under ``session::cache::`` beside sessions under ``session::``) are left
    out.  Refused without a prefix (that would be the whole store) and where the
    store cannot list its keys.
    """
    name = args.component
    store = _component(application, name)
    prefix = store.key_prefix
    if not prefix:
        raise CommandError(
            f"the {name} component has no key prefix: flushing it would delete every key "
            "of its store",
            ExitCode.UNSUPPORTED,
        )
    if not store.can_scan:
        raise CommandError(
            f"the {store.name} store cannot list its keys, so {name} cannot be flushed "
            "key by key (its keys expire by themselves)",
            ExitCode.UNSUPPORTED,
        )
    others = _other_prefixes(application.components, name, store)
    keys = [key for key in store.scan("*")
            if not any((prefix + key).startswith(other) for other in others)]  # fmt: skip
    if not keys:
        emit(f"nothing under {prefix!r}")
        return ExitCode.OK
    where = store.server_info().get("server", "")
    question = f"delete {_keys(len(keys))} under {prefix!r} from the {store.name} store {where}?"
    if not args.yes and not _confirmed(question):
        print("pkvs: not confirmed: nothing deleted", file=sys.stderr)
        return ExitCode.ABORTED
    deleted = 0
    for start in range(0, len(keys), FLUSH_BATCH):
        with store.batch() as batch:
            done = [batch.delete(key) for key in keys[start : start + FLUSH_BATCH]]
        deleted += sum(1 for pending in done if pending.value)
    emit(f"deleted {_keys(deleted)} under {prefix!r}")
    return ExitCode.OK


def _keys(count: int) -> str:
    return f"{count} key" if count == 1 else f"{count} keys"


def _other_prefixes(components: Components, name: str, store: Store) -> list[str]:
    """Longer prefixes of other components on *store*'s client: their keys are theirs."""
    prefixes = []
    for other_name in COMPONENT_NAMES:
        other = components.store_of(other_name)
        if (
            other_name != name
            and other is not None
            and other.shares_client_with(store)
            and len(other.key_prefix) > len(store.key_prefix)
            and other.key_prefix.startswith(store.key_prefix)
        ):
            prefixes.append(other.key_prefix)
    return prefixes


def _confirmed(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in {"y", "yes"}


COMMANDS: dict[str, Callable[[argparse.Namespace, Application], ExitCode]] = {
    "ping": ping,
    "session": session,
    "perlsess": perlsess,
    "ratelimit": ratelimit,
    "cache": cache,
    "flush": flush,
}
