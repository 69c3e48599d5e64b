"""The machinery of settings: converters, store specs, and the parsing of a schema.

Each component declares its own settings - a frozen dataclass beside the component,
each field's default and converter declared once with ``setting`` - and this
module reads them, knowing no component.  A component is configured under its own
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from types import MappingProxyType
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from pyramid.exceptions import ConfigurationError
from pyramid.settings import asbool

from .codecs import codec_names
from .stores import canonical_name, registered_names

SETTINGS_PREFIX = "kvs"
T = TypeVar("T")

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
        return bool(asbool(value))
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


#: schemes whose store reads the whole URL itself, when it is built (at start-up)
SERVERS_SCHEMES = {"redis+cluster", "redis+sentinel"}


def parse_store_url(url: str) -> tuple[str, dict[str, Any]]:
    """The backend and options a store URL describes.

    ``memory://``, ``redis://``, ``rediss://``, ``unix://`` (Redis on a socket),
    ``redis+cluster://h1:p1,h2:p2``, ``redis+sentinel://h1:p1,h2:p2/service`` and
    ``memcached://host:port,host:port``; query parameters become options.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ValueError("expected a URL such as redis://host:6379/0 or memory://")
    scheme = url.split("://", 1)[0].lower()
    if scheme in SERVERS_SCHEMES:
        return scheme, {"url": url}
    if scheme in {"redis", "rediss", "unix"}:
        try:
            from redis.connection import parse_url
        except ImportError:
            return "redis", {"url": url}  # the missing extra is reported when building
        try:
            parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
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
        "unix://, redis+cluster://, redis+sentinel:// or memcached://"
    )


def _number_or_text(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def to_optional_str(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return to_str(value).strip()


def to_optional_positive_int(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none"}):
        return None
    return to_positive_int(value)


# -- a component's schema ---------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """How one setting is read: its converter, and the name it goes by."""

    convert: Callable[[Any], Any]
    #: the setting's name when it differs from the field's
    name: str | None = None
    #: never echo the value in error messages (it ends up in logs)
    sensitive: bool = False


_SETTING = "pyramid_kvs.setting"


def setting(
    default: Any,
    convert: Callable[[Any], Any],
    *,
    name: str | None = None,
    sensitive: bool = False,
) -> Any:
    """A field of a settings dataclass: its default and its converter, declared together."""
    return field(default=default, metadata={_SETTING: Setting(convert, name, sensitive)})


#: The fields every component has for choosing its store.
STORE_FIELDS = ("kvs", "type", "kvs_kwargs", "url")


def component_prefix(component: str) -> str:
    return f"{SETTINGS_PREFIX}.{component}"


def is_configured(settings: Mapping[str, Any], component: str) -> bool:
    """Whether *component* has any setting (cheap: nothing is validated)."""
    prefix = component_prefix(component)
    return prefix in settings or any(key.startswith(prefix + ".") for key in settings)


def raw_component(settings: Mapping[str, Any], component: str) -> dict[str, Any] | None:
    """The component's settings as one dict (JSON form, then flat keys), or ``None``.

    ``None`` means the component is not configured at all.
    """
    prefix = component_prefix(component)
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
    """The store of a component's ``kvs``/``type``, ``kvs_kwargs`` and ``url``."""

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
    sources: list[str] = []
    if raw.get("kvs_kwargs") is not None:
        try:
            options = to_mapping(raw["kvs_kwargs"])
        except ValueError as exc:
            raise fail("kvs_kwargs", f"{exc}, got {raw['kvs_kwargs']!r}") from None
        sources.append("kvs_kwargs")
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
        sources.insert(0, "url")
    return StoreSpec(
        backend or "memory", MappingProxyType(options), prefix, tuple(sources) or ("kvs_kwargs",)
    )


def parse_schema(
    raw: Mapping[str, Any], prefix: str, schema: type[Any], *, ignored: Sequence[str] = ()
) -> dict[str, Any]:
    """The value of each field of the dataclass *schema* declared with ``setting``.

    Converts what *raw* gives, fills the rest with the defaults, and rejects any key
    that is neither a setting, a store field nor in *ignored*.  Raises
    ``ConfigurationError`` naming the setting and the form expected.
    """
    declared = [
        (spec.name or item.name, item, spec)
        for item in fields(schema)
        if (spec := item.metadata.get(_SETTING)) is not None
    ]
    known = {name for name, _, _ in declared} | set(STORE_FIELDS) | set(ignored)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigurationError(
            f"{prefix}: unknown setting(s) {', '.join(unknown)}; "
            f"expected some of: {', '.join(sorted(known - set(ignored)))}"
        )
    values: dict[str, Any] = {}
    for name, item, spec in declared:
        if name not in raw:
            assert item.default is not MISSING, f"{schema.__name__}.{item.name} has no default"
            values[item.name] = item.default
            continue
        try:
            values[item.name] = spec.convert(raw[name])
        except ValueError as exc:
            got = "a value of another form" if spec.sensitive else repr(raw[name])
            raise ConfigurationError(f"{prefix}.{name}: {exc}, got {got}") from None
    return values


def parse_component(settings: Mapping[str, Any], component: str, schema: type[T]) -> T | None:
    """The settings of *component* as its *schema*, or ``None`` when not configured.

    For schemas whose fields are all plain settings plus ``store``; components with
    settings that depend on each other use ``parse_schema`` themselves.
    """
    raw = raw_component(settings, component)
    if raw is None:
        return None
    prefix = component_prefix(component)
    build = cast(Callable[..., T], schema)  # a dataclass whose fields parse_schema fills
    return build(store=parse_store(raw, prefix), **parse_schema(raw, prefix, schema))
