"""``kvs.ratelimit``: the rate limiter's settings, declared once, field by field."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..settings import (
    STORE_FIELDS,
    StoreSpec,
    component_prefix,
    one_of,
    parse_schema,
    parse_store,
    raw_component,
    setting,
    to_key_prefix,
    to_non_negative_int,
    to_positive_int,
)
from .headers import STYLES as HEADER_STYLES
from .limits import ALGORITHMS, Limit, parse_limits

HOLDER_KINDS = ("session", "ip", "userid")
_DOTTED_NAME = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
#: the 1.x limit: 15 requests a second
DEFAULT_LIMITS = (Limit(15, 1),)


def to_holder(value: Any) -> str:
    """``session``, ``ip``, ``userid``, ``header:NAME`` or a dotted name of a callable."""
    expected = "expected session, ip, userid, header:NAME or a dotted name (pkg.module.func)"
    if not isinstance(value, str):
        raise ValueError(expected)
    holder = value.strip()
    if holder in HOLDER_KINDS:
        return holder
    if holder.startswith("header:"):
        if not _HEADER_NAME.match(holder[len("header:") :]):
            raise ValueError(expected)
        return holder
    if ("." in holder or ":" in holder) and _DOTTED_NAME.match(holder):
        return holder
    raise ValueError(expected)


@dataclass(frozen=True)
class RateLimitSettings:
    """``kvs.ratelimit``: the request rate limiter (see README, "Rate limiting")."""

    store: StoreSpec
    #: the 1.x form of one limit: ``limit`` requests per ``window`` seconds
    window: int = setting(1, to_positive_int)
    limit: int = setting(15, to_positive_int)
    #: every request must fit all of them; empty: only views with their own limit.
    #: Given, it wins over window and limit
    limits: tuple[Limit, ...] = setting(DEFAULT_LIMITS, parse_limits)
    key_prefix: str = setting("ratelimit::", to_key_prefix)
    algorithm: str = setting("fixed", one_of(*ALGORITHMS))
    #: whom a limit applies to: session, ip, userid, header:NAME or a dotted name
    holder: str = setting("session", to_holder)
    #: how many reverse proxies in front of the application append X-Forwarded-For
    trusted_proxies: int = setting(0, to_non_negative_int)
    #: which headers describe the limit: both, legacy, ietf or none
    headers: str = setting("both", one_of(*HEADER_STYLES))
    #: when the store fails: allow (and log) or deny (503)
    on_error: str = setting("allow", one_of("allow", "deny"))


def parse_ratelimit(settings: Mapping[str, Any]) -> RateLimitSettings | None:
    """``kvs.ratelimit`` as ``RateLimitSettings``, or ``None`` when not configured.

    ``limits`` wins over the original ``window`` / ``limit`` pair.  Without a store
    of its own (``kvs``, ``type``, ``kvs_kwargs`` or ``url``) the limiter uses the
    session's, so that one round trip can serve both.
    """
    prefix = component_prefix("ratelimit")
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
    values = parse_schema(raw, prefix, RateLimitSettings, ignored=("key_suffix",))
    if "limits" not in raw:
        values["limits"] = (Limit(values["limit"], values["window"]),)
    session = raw_component(settings, "session") or {}
    if any(raw.get(key) is not None for key in STORE_FIELDS):
        store = parse_store(raw, prefix)
    elif any(session.get(key) is not None for key in STORE_FIELDS):
        store = parse_store(session, component_prefix("session"))
    else:
        store = StoreSpec(origin=prefix)
    return RateLimitSettings(store=store, **values)
