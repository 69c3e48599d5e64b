"""Settings: read once at start-up into frozen, typed objects.

Each component (cache, session, ratelimit, perlsess) is configured under its own
prefix, in either of two forms that can be mixed, flat keys winning:

1. the original add-on's JSON form, still found in existing ``.ini`` files::

       kvs.cache = {"kvs": "redis", "kvs_kwargs": {"host": "cache"}, "ttl": 300}

   (a dict works too when configuring from Python);
2. flat keys, one per field, the usual Pyramid way::

       kvs.cache.url = redis://cache:6379/0
       kvs.cache.ttl = 300

Every field has one converter, applied to strings from an ``.ini`` and to typed
values from Python alike.  Anything wrong - invalid JSON, an unknown key or backend,
a value of the wrong form, a missing client library - raises Pyramid's
``ConfigurationError`` naming the setting and the form expected, so a typo stops
the application at start-up instead of surfacing as a 500 in production.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pyramid.exceptions import ConfigurationError
from pyramid.settings import asbool

from .codecs import codec_names
from .ratelimit.headers import STYLES as HEADER_STYLES
from .ratelimit.limits import ALGORITHMS, Limit, parse_limits
from .stores import canonical_name, registered_names

SETTINGS_PREFIX = "kvs"
COMPONENTS = ("cache", "session", "ratelimit", "perlsess")

# -- converters ------------------------------------------------------------------------
# Each takes the raw value (a string from an .ini, or a Python value) and returns the
# typed value, or raises ValueError with the expected form in its message.


def to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {
        "true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "t", "f",
    }:  # fmt: skip
        return asbool(value)
    raise ValueError("expected true or false")


def to_positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a positive whole number")
    try:
        number = int(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise ValueError("expected a positive whole number") from None
    if not isinstance(number, int) or number <= 0:
        raise ValueError("expected a positive whole number")
    return number


def to_ttl(value: Any) -> int | None:
    """Seconds (a positive whole number), or ``none`` / null for no expiry."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"none", ""}):
        return None
    try:
        return to_positive_int(value)
    except ValueError:
        raise ValueError("expected a positive number of seconds, or none") from None


def to_non_negative_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, 0 or more")
    try:
        number = int(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise ValueError("expected a whole number, 0 or more") from None
    if not isinstance(number, int) or number < 0:
        raise ValueError("expected a whole number, 0 or more")
    return number


def to_positive_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a positive number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a positive number") from None
    if not number > 0:
        raise ValueError("expected a positive number")
    return number


def to_secret(value: Any) -> str | None:
    """A signing secret of at least 32 characters, or none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value.strip()) < 32:
        raise ValueError("expected a random string of at least 32 characters")
    return value.strip()


def to_key_prefix(value: Any) -> str:
    prefix = to_str(value)
    if any(ord(char) <= 32 or ord(char) == 127 for char in prefix):
        raise ValueError("expected a key prefix without spaces or control characters")
    if len(prefix.encode()) > 128:
        raise ValueError("expected a key prefix of at most 128 bytes")
    return prefix


def to_mapping(value: Any) -> dict[str, Any]:
    """A JSON object, as a string or a dict."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON object ({exc})") from None
    if not isinstance(value, Mapping):
        raise ValueError("expected a JSON object")
    return dict(value)


def one_of(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or value.strip() not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return value.strip()

    return convert


def to_codec(value: Any) -> str:
    return one_of(*codec_names())(value)


def to_backend(value: Any) -> str:
    if not isinstance(value, str) or canonical_name(value.strip()) not in registered_names():
        raise ValueError(f"expected a store name, one of: {', '.join(registered_names())}")
    return canonical_name(value.strip())


# -- the store a component uses ------------------------------------------------------------


@dataclass(frozen=True)
class StoreSpec:
    """Which store a component uses: a backend name and the client's options."""

    backend: str = "memory"
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the setting it was read from, for error messages
    origin: str = ""
    #: the keys the options came from (``url``, ``kvs_kwargs``), for error messages
    sources: tuple[str, ...] = field(default=("kvs_kwargs",), compare=False)

    @property
    def identity(self) -> tuple[str, str]:
        """Equal for specs that can share one client (one connection pool)."""
        return self.backend, json.dumps(dict(self.options), sort_keys=True, default=repr)


RESERVED_SCHEMES = {"redis+cluster", "redis+sentinel"}


def parse_store_url(url: str) -> tuple[str, dict[str, Any]]:
    """The backend and options a store URL describes.

    ``memory://``, ``redis://``, ``rediss://``, ``unix://`` (Redis on a socket) and
    ``memcached://host:port,host:port``; query parameters become options.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ValueError("expected a URL such as redis://host:6379/0 or memory://")
    scheme = url.split("://", 1)[0].lower()
    if scheme in RESERVED_SCHEMES:
        raise ValueError(f"{scheme}:// is reserved for a later release and not supported yet")
    if scheme in {"redis", "rediss", "unix"}:
        try:
            from redis.connection import parse_url
        except ImportError:
            return "redis", {"url": url}  # the missing extra is reported when building
        try:
            parse_url(url)
        except ValueError as exc:
            raise ValueError(f"expected a valid Redis URL ({exc})") from None
        return "redis", {"url": url}
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        options[name] = _number_or_text(value)
    if scheme == "memory":
        return "memory", options
    if scheme in {"memcached", "memcache"}:
        netloc = unquote(parts.netloc)
        servers = [server.strip() for server in netloc.split(",") if server.strip()]
        if not servers:
            raise ValueError("expected memcached://host:port[,host:port...]")
        options["servers"] = servers
        return "memcached", options
    raise ValueError(
        f"unknown URL scheme {scheme!r}: expected memory://, redis://, rediss://, "
        "unix:// or memcached://"
    )


def _number_or_text(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


# -- components ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One setting of a component: its converter and default."""

    name: str
    convert: Callable[[Any], Any]
    default: Any = None
    #: never echo the value in error messages (it ends up in logs)
    sensitive: bool = False


#: The fields every component has for choosing its store.
STORE_FIELDS = ("kvs", "type", "kvs_kwargs", "url")


@dataclass(frozen=True)
class CacheSettings:
    """``kvs.cache``: the application cache behind ``request.cache``."""

    store: StoreSpec
    key_prefix: str = "cache::"
    ttl: int | None = 300
    codec: str = "json"
    #: raise store errors to the caller instead of treating them as misses
    raise_errors: bool = False
    #: seconds one ``get_or_set`` caller may hold the regeneration lock
    lock_timeout: int = 30
    #: seconds other callers wait for that regeneration before computing themselves
    lock_wait: float = 2.0
    #: HMAC key signing pickled values (the pickle codec refuses unsigned ones)
    secret: str | None = None


CACHE_FIELDS = (
    Field("key_prefix", to_key_prefix, "cache::"),
    Field("ttl", to_ttl, 300),
    Field("codec", to_codec, "json"),
    Field("raise_errors", to_bool, False),
    Field("lock_timeout", to_positive_int, 30),
    Field("lock_wait", to_positive_float, 2.0),
    Field("secret", to_secret, None, sensitive=True),
)


def raw_component(settings: Mapping[str, Any], component: str) -> dict[str, Any] | None:
    """The component's settings as one dict (JSON form, then flat keys), or ``None``.

    ``None`` means the component is not configured at all.
    """
    prefix = f"{SETTINGS_PREFIX}.{component}"
    json_form = settings.get(prefix)
    flat = {
        key[len(prefix) + 1 :]: value
        for key, value in settings.items()
        if key.startswith(prefix + ".")
    }
    if json_form is None and not flat:
        return None
    raw: dict[str, Any] = {}
    if json_form is not None:
        try:
            raw.update(to_mapping(json_form))
        except ValueError as exc:
            raise ConfigurationError(f'{prefix}: {exc}, e.g. {{"kvs": "redis"}}') from None
    raw.update(flat)
    return raw


def parse_store(raw: Mapping[str, Any], prefix: str) -> StoreSpec:
    """The :class:`StoreSpec` from a component's ``kvs``/``type``, ``kvs_kwargs``, ``url``."""

    def fail(key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{prefix}.{key}: {problem}")

    backends: dict[str, str] = {}
    for key in ("kvs", "type"):
        if raw.get(key) is not None:
            try:
                backends[key] = to_backend(raw[key])
            except ValueError as exc:
                raise fail(key, f"{exc}, got {raw[key]!r}") from None
    if len(set(backends.values())) > 1:
        raise fail("kvs", f"'kvs' and 'type' name different stores: {backends}")
    options: dict[str, Any] = {}
    if raw.get("kvs_kwargs") is not None:
        try:
            options = to_mapping(raw["kvs_kwargs"])
        except ValueError as exc:
            raise fail("kvs_kwargs", f"{exc}, got {raw['kvs_kwargs']!r}") from None
    backend = next(iter(backends.values()), None)
    if raw.get("url") is not None:
        try:
            url_backend, url_options = parse_store_url(raw["url"])
        except ValueError as exc:
            raise fail("url", f"{exc}, got {raw['url']!r}") from None
        if backend is not None and backend != url_backend:
            raise fail("url", f"the URL names {url_backend} but the store is {backend}")
        backend = url_backend
        options = {**url_options, **options}
    sources = tuple(key for key in ("url", "kvs_kwargs") if raw.get(key) is not None)
    return StoreSpec(
        backend or "memory", MappingProxyType(options), prefix, sources or ("kvs_kwargs",)
    )


def parse_fields(
    raw: Mapping[str, Any], prefix: str, fields: Sequence[Field], extra_known: Sequence[str] = ()
) -> dict[str, Any]:
    """Convert each field of *raw*, rejecting unknown keys; defaults fill the rest."""
    known = {f.name for f in fields} | set(STORE_FIELDS) | set(extra_known)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigurationError(
            f"{prefix}: unknown setting(s) {', '.join(unknown)}; "
            f"expected some of: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for spec in fields:
        if spec.name not in raw:
            values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = spec.convert(raw[spec.name])
        except ValueError as exc:
            got = "a value of another form" if spec.sensitive else repr(raw[spec.name])
            raise ConfigurationError(f"{prefix}.{spec.name}: {exc}, got {got}") from None
    return values


def parse_cache(settings: Mapping[str, Any]) -> CacheSettings | None:
    """``kvs.cache`` as :class:`CacheSettings`, or ``None`` when not configured."""
    prefix = f"{SETTINGS_PREFIX}.cache"
    raw = raw_component(settings, "cache")
    if raw is None:
        return None
    values = parse_fields(raw, prefix, CACHE_FIELDS)
    return CacheSettings(store=parse_store(raw, prefix), **values)


#: characters RFC 6265 allows in a cookie name (a "token")
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")


def to_cookie_name(value: Any) -> str:
    name = to_str(value).strip()
    if not _COOKIE_NAME.fullmatch(name):
        raise ValueError("expected a cookie name (letters, digits and !#$%&'*+-.^_`|~)")
    return name


@dataclass(frozen=True)
class PerlSessionSettings:
    """``kvs.perlsess``: the Perl application's sessions behind ``request.perlsess``.

    The defaults are the original add-on's, so its ``.ini`` lines keep working.
    """

    store: StoreSpec
    #: prepended to the session id to form the store key the Perl side writes
    key_prefix: str = "perlsess::"
    #: the cookie holding the session id (CGI::Session: CGISESSID, Plack: plack_session)
    cookie_name: str = "session_id"
    #: how the Perl side serialized the session: "storable" or "json"
    codec: str = "storable"
    #: bytes a stored value may have, compressed and again decompressed
    max_size: int = 1024 * 1024


PERLSESS_FIELDS = (
    Field("key_prefix", to_key_prefix, "perlsess::"),
    Field("cookie_name", to_cookie_name, "session_id"),
    Field("codec", one_of("storable", "json"), "storable"),
    Field("max_size", to_positive_int, 1024 * 1024),
)


def parse_perlsess(settings: Mapping[str, Any]) -> PerlSessionSettings | None:
    """``kvs.perlsess`` as :class:`PerlSessionSettings`, or ``None`` when not configured."""
    prefix = f"{SETTINGS_PREFIX}.perlsess"
    raw = raw_component(settings, "perlsess")
    if raw is None:
        return None
    values = parse_fields(raw, prefix, PERLSESS_FIELDS)
    return PerlSessionSettings(store=parse_store(raw, prefix), **values)


@dataclass(frozen=True)
class RateLimitSettings:
    """``kvs.ratelimit``: the request rate limiter (see README, "Rate limiting")."""

    store: StoreSpec
    #: every request must fit all of them; empty: only views with their own limit
    limits: tuple[Limit, ...] = (Limit(15, 1),)
    key_prefix: str = "ratelimit::"
    algorithm: str = "fixed"
    #: who a limit applies to: session, ip, userid, header:NAME or a dotted name
    key: str = "session"
    #: how many reverse proxies in front of the application append X-Forwarded-For
    trusted_proxies: int = 0
    #: which headers describe the limit: both, legacy, ietf or none
    headers: str = "both"
    #: when the store is unreachable: allow (and log) or deny (503)
    on_error: str = "allow"


HOLDER_KINDS = ("session", "ip", "userid")
_DOTTED_NAME = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def to_holder_key(value: Any) -> str:
    """``session``, ``ip``, ``userid``, ``header:NAME`` or a dotted name of a callable."""
    expected = "expected session, ip, userid, header:NAME or a dotted name (pkg.module.func)"
    if not isinstance(value, str):
        raise ValueError(expected)
    value = value.strip()
    if value in HOLDER_KINDS:
        return value
    if value.startswith("header:"):
        if not _HEADER_NAME.match(value[len("header:") :]):
            raise ValueError(expected)
        return value
    if ("." in value or ":" in value) and _DOTTED_NAME.match(value):
        return value
    raise ValueError(expected)


def to_limits(value: Any) -> tuple[Limit, ...]:
    return parse_limits(value)


RATELIMIT_FIELDS = (
    Field("window", to_positive_int, 1),
    Field("limit", to_positive_int, 15),
    Field("limits", to_limits, None),
    Field("key_prefix", to_key_prefix, "ratelimit::"),
    Field("algorithm", one_of(*ALGORITHMS), "fixed"),
    Field("key", to_holder_key, "session"),
    Field("trusted_proxies", to_non_negative_int, 0),
    Field("headers", one_of(*HEADER_STYLES), "both"),
    Field("on_error", one_of("allow", "deny"), "allow"),
)


def parse_ratelimit(settings: Mapping[str, Any]) -> RateLimitSettings | None:
    """``kvs.ratelimit`` as :class:`RateLimitSettings`, or ``None`` when not configured.

    ``limits`` wins over the original ``window`` / ``limit`` pair.  Without a store
    of its own (``kvs``, ``type``, ``kvs_kwargs`` or ``url``) the limiter uses the
    session's, so that one round trip can serve both.
    """
    prefix = f"{SETTINGS_PREFIX}.ratelimit"
    raw = raw_component(settings, "ratelimit")
    if raw is None:
        return None
    if "key_suffix" in raw:
        # 1.x appended it to the session key of its counter; 2.0 keys counters by
        # holder under key_prefix, so the value has nothing left to name.
        warnings.warn(
            f"{prefix}.key_suffix is deprecated and ignored: rate-limit counters live "
            "under kvs.ratelimit.key_prefix (default 'ratelimit::')",
            DeprecationWarning,
            stacklevel=2,
        )
        raw = {key: value for key, value in raw.items() if key != "key_suffix"}
    values = parse_fields(raw, prefix, RATELIMIT_FIELDS)
    window, limit, limits = values.pop("window"), values.pop("limit"), values.pop("limits")
    if limits is None:
        limits = (Limit(limit, window),)
    session = raw_component(settings, "session") or {}
    if any(raw.get(key) is not None for key in STORE_FIELDS):
        store = parse_store(raw, prefix)
    elif any(session.get(key) is not None for key in STORE_FIELDS):
        store = parse_store(session, f"{SETTINGS_PREFIX}.session")
    else:
        store = StoreSpec(origin=prefix)
    return RateLimitSettings(store=store, limits=limits, **values)


# -- sessions ----------------------------------------------------------------------------

#: The names a session id may travel under: cookie and HTTP header tokens.
_TOKEN_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def to_key_names(value: Any) -> tuple[str, ...]:
    """One name, or several (a JSON list, or names separated by commas or spaces)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("expected a name or a JSON list of names") from None
        else:
            value = [part for part in re.split(r"[\s,]+", text) if part]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("expected a name or a list of names")
    for name in value:
        if not isinstance(name, str) or not _TOKEN_NAME.match(name):
            raise ValueError("expected cookie or header names (letters, digits, - and _)")
    return tuple(value)


def to_optional_str(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return to_str(value).strip()


def to_optional_positive_int(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none"}):
        return None
    return to_positive_int(value)


def to_samesite(value: Any) -> str | None:
    """``Strict``, ``Lax`` or ``None`` (the attribute value; needs ``cookie_secure``)."""
    choices = {"strict": "Strict", "lax": "Lax", "none": "None"}
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise ValueError("expected one of: Strict, Lax, None")
    return choices[value.strip().lower()]


#: the longest header token a session accepts (longer values are not tokens)
TOKEN_MAX_LENGTH = 4096


def to_token_length(value: Any) -> int:
    try:
        length = to_positive_int(value)
    except ValueError:
        length = 0
    if not 1 <= length <= TOKEN_MAX_LENGTH:
        raise ValueError(f"expected a whole number from 1 to {TOKEN_MAX_LENGTH}")
    return length


@dataclass(frozen=True)
class SessionSettings:
    """``kvs.session``: the session factory behind ``request.session``."""

    store: StoreSpec
    key_prefix: str = "session::"
    #: idle timeout: a session not used for this many seconds expires
    ttl: int | None = 300
    codec: str = "json"
    #: "cookie" (the id travels in a cookie) or "header" (a token in a header)
    session_type: str = "cookie"
    #: the cookie name, or the header names a token is read from, in order
    key_names: tuple[str, ...] = ("session_id",)
    #: HMAC key signing cookie ids (and keying the hash of stored ids)
    secret: str | None = None
    #: absolute lifetime cap in seconds since creation, whatever the activity
    lifetime: int | None = None
    #: "error": a store outage answers 503; "empty": carry on with an unsaved session
    on_unavailable: str = "error"
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_secure: bool = False
    cookie_httponly: bool = True
    cookie_samesite: str | None = "Lax"
    cookie_max_age: int | None = None
    #: header sessions: a token the store does not know starts a session under it
    #: (false: only tokens bound with update_session_token count)
    adopt_tokens: bool = True
    #: header sessions: the shortest token accepted
    token_min_length: int = 1
    #: read (and move) sessions pyramid_kvs 1.x left in the store
    legacy_sessions: bool = True

    @property
    def key_name(self) -> str:
        """The cookie name, or the first header name."""
        return self.key_names[0]


SESSION_FIELDS = (
    Field("key_prefix", to_key_prefix, "session::"),
    Field("ttl", to_ttl, 300),
    Field("codec", to_codec, "json"),
    Field("session_type", one_of("cookie", "header"), "cookie"),
    Field("key_name", to_key_names, ("session_id",)),
    Field("secret", to_secret, None, sensitive=True),
    Field("lifetime", to_optional_positive_int, None),
    Field("on_unavailable", one_of("error", "empty"), "error"),
    Field("cookie_path", to_str, "/"),
    Field("cookie_domain", to_optional_str, None),
    Field("cookie_secure", to_bool, False),
    Field("cookie_httponly", to_bool, True),
    Field("cookie_samesite", to_samesite, "Lax"),
    Field("cookie_max_age", to_optional_positive_int, None),
    Field("adopt_tokens", to_bool, True),
    Field("token_min_length", to_token_length, 1),
    Field("legacy_sessions", to_bool, True),
)


def parse_session(settings: Mapping[str, Any]) -> SessionSettings | None:
    """``kvs.session`` as :class:`SessionSettings`, or ``None`` when not configured."""
    prefix = f"{SETTINGS_PREFIX}.session"
    raw = raw_component(settings, "session")
    if raw is None:
        return None
    values = parse_fields(raw, prefix, SESSION_FIELDS)
    values["key_names"] = values.pop("key_name")
    if values["session_type"] == "cookie" and len(values["key_names"]) > 1:
        raise ConfigurationError(
            f"{prefix}.key_name: expected one cookie name, got {raw['key_name']!r} "
            "(several names are for session_type = header)"
        )
    if values["cookie_samesite"] == "None" and not values["cookie_secure"]:
        raise ConfigurationError(
            f"{prefix}.cookie_samesite: None needs cookie_secure = true "
            "(browsers drop SameSite=None cookies that are not Secure)"
        )
    return SessionSettings(store=parse_store(raw, prefix), **values)


def configured_components(settings: Mapping[str, Any]) -> set[str]:
    """The components that have any setting (cheap; nothing is validated)."""
    present = set()
    for component in COMPONENTS:
        prefix = f"{SETTINGS_PREFIX}.{component}"
        if prefix in settings or any(key.startswith(prefix + ".") for key in settings):
            present.add(component)
    return present
