"""``request.session``: a Pyramid ``ISession`` kept in a store, for cookies or API tokens.

One session is one *record* of the store - a field per top-level key, each encoded
with the codec, plus ``__created__`` - under a keyed hash of its id, so a store dump
reveals no id.  Why it is shaped this way:

* **lazy and cheap**: nothing is read until the view uses the session; the load
  also renews the idle timeout (one round trip); reads never write.
* **no lost updates**: when the response leaves, each key's encoding is compared
  with what was loaded and only the changed keys are written, with the store's
  atomic field-level update, so overlapping requests changing different keys keep
  both changes.  A record without ``__created__`` was re-created by an update racing
  an ``invalidate()``, and is never adopted.
* **no fixation**: a cookie id the store does not know is never adopted.  A header
  token is - a credential the client sends deliberately cannot be planted - as in
  1.x.  Sessions 1.x left in the store are moved into records (see ``legacy``).
* **nothing reported saved that was not**: any store error answers 503 by default.

``SessionFactory.read_id`` (``KVSSession.ref``) is the one reader of the session id,
which the rate limiter keys its holders by; ``KVSSession.prefetch`` lets it load the
session in its own batch.  The user guide is README's "Sessions".
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import math
import re
import secrets
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken, ConfigurationError
from pyramid.httpexceptions import HTTPServiceUnavailable
from pyramid.interfaces import ISession
from pyramid.request import Request
from pyramid.response import Response
from webob.cookies import make_cookie
from zope.interface import implementer

from . import legacy
from .codecs import Codec
from .cookies import cookie_value
from .settings import (
    StoreSpec,
    component_prefix,
    one_of,
    parse_schema,
    parse_store,
    raw_component,
    setting,
    to_bool,
    to_codec,
    to_key_prefix,
    to_optional_positive_int,
    to_optional_str,
    to_positive_int,
    to_secret,
    to_str,
    to_ttl,
)
from .stores import Batch, Pending, Store, StoreError, WrongKind
from .stores.base import StoredRecord
from .vary import add_vary

log = logging.getLogger(__name__)

#: the reserved record field holding the creation time (Unix seconds)
CREATED_FIELD = "__created__"
FLASH_KEY_PREFIX = "_flash:"
CSRF_KEY = "_csrf_token"

ID_BYTES = 32  # 256 bits
#: values that cannot be changed in place: reading one cannot change the session
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})
#: where the value goes in a prebuilt Set-Cookie header
_VALUE_MARK = "pyramid-kvs-value"
_ID = re.compile(r"^[A-Za-z0-9_-]{43}\Z")  # secrets.token_urlsafe(32)
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{43}\Z")  # an unpadded base64 SHA-256 HMAC
#: header tokens: visible ASCII, with inner spaces ("Bearer abc...")
_TOKEN = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?\Z")
_RESERVED = re.compile(r"^__.*__\Z", re.DOTALL)

#: Requests that end in these save nothing and set no cookie.  Pyramid's CSRF check
#: reads the token with ``get_csrf_token()``, which creates one for a client without
#: a session: saving it would store a session for every forged request, and its
#: cookie would replace the one of a logged-in user whose browser left it out of a
#: cross-site POST (SameSite=Lax).  Other error answers still save: a view may
#: ``raise HTTPFound`` after a login, or count failures before raising a 429 of its own.
CSRF_REFUSALS: tuple[type[BaseException], ...] = (BadCSRFToken, BadCSRFOrigin)


# -- settings ------------------------------------------------------------------------------

#: the names a session id may travel under: cookie and HTTP header tokens
_TOKEN_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: the longest header token a session accepts (longer values are not tokens)
TOKEN_MAX_LENGTH = 4096


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


def to_samesite(value: Any) -> str | None:
    """``Strict``, ``Lax`` or ``None`` (the attribute value; needs ``cookie_secure``)."""
    choices = {"strict": "Strict", "lax": "Lax", "none": "None"}
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise ValueError("expected one of: Strict, Lax, None")
    return choices[value.strip().lower()]


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
    key_prefix: str = setting("session::", to_key_prefix)
    #: idle timeout: a session not used for this many seconds expires
    ttl: int | None = setting(300, to_ttl)
    codec: str = setting("json", to_codec)
    #: "cookie" (the id travels in a cookie) or "header" (a token in a header)
    session_type: str = setting("cookie", one_of("cookie", "header"))
    #: the cookie name, or the header names a token is read from, in order
    key_names: tuple[str, ...] = setting(("session_id",), to_key_names, name="key_name")
    #: HMAC key signing cookie ids (and keying the hash of stored ids)
    secret: str | None = setting(None, to_secret, sensitive=True)
    #: absolute lifetime cap in seconds since creation, whatever the activity
    lifetime: int | None = setting(None, to_optional_positive_int)
    #: "error": a store failure answers 503; "empty": carry on with an unsaved session
    on_unavailable: str = setting("error", one_of("error", "empty"))
    cookie_path: str = setting("/", to_str)
    cookie_domain: str | None = setting(None, to_optional_str)
    cookie_secure: bool = setting(False, to_bool)
    cookie_httponly: bool = setting(True, to_bool)
    cookie_samesite: str | None = setting("Lax", to_samesite)
    cookie_max_age: int | None = setting(None, to_optional_positive_int)
    #: header sessions: a token the store does not know starts a session under it
    #: (false: only tokens bound with update_session_token count)
    adopt_tokens: bool = setting(True, to_bool)
    #: header sessions: the shortest token accepted
    token_min_length: int = setting(1, to_token_length)
    #: read (and move) sessions pyramid_kvs 1.x left in the store
    legacy_sessions: bool = setting(True, to_bool)

    @property
    def key_name(self) -> str:
        """The cookie name, or the first header name."""
        return self.key_names[0]


def parse_session(settings: Mapping[str, Any]) -> SessionSettings | None:
    """``kvs.session`` as ``SessionSettings``, or ``None`` when not configured."""
    prefix = component_prefix("session")
    raw = raw_component(settings, "session")
    if raw is None:
        return None
    values = parse_schema(raw, prefix, SessionSettings)
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


# -- the session -----------------------------------------------------------------------------


class SessionUnavailable(HTTPServiceUnavailable):
    """The session store cannot be reached (``on_unavailable = error``): a 503.

    Register an exception view for it to render your own page.
    """


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SessionRef:
    """The session id a request carries, checked, with what the store needs of it."""

    #: the cookie session id, or the header token
    id: str
    #: the store key of its record: a keyed hash of the id
    key: str
    #: the header that carried a token, in lower case; ``None`` for a cookie
    header: str | None = None
    #: a pyramid_kvs 1.x cookie id: only a 1.x session can exist under it
    legacy: bool = False


class _Load:
    """A session load in flight: the record, and the 1.x value when it was queued."""

    __slots__ = ("legacy", "record")

    def __init__(
        self, record: Pending[StoredRecord | None] | None, legacy: Pending[bytes | None] | None
    ) -> None:
        self.record = record
        self.legacy = legacy


class SessionFactory:
    """Builds the session of each request; holds what every session shares.

    One is built per application at start-up (see ``pyramid_kvs.runtime``).
    *clock* gives Unix time; tests replace it to move through the lifetime cap.
    """

    def __init__(
        self,
        settings: SessionSettings,
        store: Store,
        codec: Codec,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.codec = codec
        self.clock = clock
        # Keyed once: a copy of a keyed HMAC costs half of keying one per call.
        # (signatures are prefixed: the same key serves both, kept apart)
        hash_key = (settings.secret or "pyramid_kvs.session").encode("utf-8")
        self._hashing_mac = hmac.new(hash_key, digestmod="sha256")
        self._signing_mac = None if settings.secret is None else self._hashing_mac
        #: the attributes of the session cookie, as WebOb's cookie functions take them
        self.cookie_attributes: dict[str, Any] = {
            "path": settings.cookie_path,
            "domain": settings.cookie_domain,
            "secure": settings.cookie_secure,
            "httponly": settings.cookie_httponly,
            "samesite": settings.cookie_samesite,
        }
        #: the ``Set-Cookie`` header of a session cookie without Max-Age, around its
        #: value: WebOb's own, made once (ids and signatures are never quoted)
        self.set_cookie_parts: tuple[str, str] | None = None
        if settings.session_type == "cookie" and settings.cookie_max_age is None:
            header = make_cookie(settings.key_name, _VALUE_MARK, **self.cookie_attributes)
            before, _, after = header.partition(_VALUE_MARK)
            self.set_cookie_parts = (before, after)
        #: header names as the request reads them: HTTP header names ignore case
        self._header_names = {name.lower(): name for name in settings.key_names}

    def __call__(self, request: Request) -> KVSSession:
        return KVSSession(self, request)

    @property
    def uses_cookie(self) -> bool:
        return self.settings.session_type == "cookie"

    @property
    def vary_headers(self) -> tuple[str, ...]:
        """The request headers a response that used the session depends on."""
        return ("Cookie",) if self.uses_cookie else self.settings.key_names

    # -- ids -------------------------------------------------------------------------

    def new_id(self) -> str:
        return secrets.token_urlsafe(ID_BYTES)

    def _signature(self, session_id: str) -> str:
        assert self._signing_mac is not None
        mac = self._signing_mac.copy()
        mac.update(b"pyramid_kvs.session.id:" + session_id.encode("ascii"))
        return _b64(mac.digest())

    def cookie_value(self, session_id: str) -> str:
        """What the cookie carries: the id, signed when there is a secret."""
        if self.settings.secret is None:
            return session_id
        return f"{session_id}.{self._signature(session_id)}"

    def id_from_cookie(self, value: str) -> str | None:
        """The id in a cookie value, or ``None`` if malformed or its signature is wrong."""
        session_id, dot, signature = value.partition(".")
        if not _ID.match(session_id):
            return None
        if self.settings.secret is None:
            return None if dot else session_id
        if not _SIGNATURE.match(signature):
            return None
        if not hmac.compare_digest(signature, self._signature(session_id)):
            return None
        return session_id

    def valid_token(self, token: str) -> bool:
        """Whether *token* can name a header session: visible ASCII, of a bounded length."""
        return (
            self.settings.token_min_length <= len(token) <= TOKEN_MAX_LENGTH
            and _TOKEN.match(token) is not None
        )

    def header_name(self, name: str) -> str | None:
        """The configured spelling of the session header *name*, in any case; or ``None``."""
        return self._header_names.get(name.lower())

    def incoming(self, request: Request) -> tuple[str, str | None] | None:
        """The raw id the request carries, unchecked, and the header that carried it.

        ``None`` when there is none, or when the Cookie header is not UTF-8 (WebOb
        cannot parse it: the bytes are an outsider's, so they count as no id).
        """
        if self.uses_cookie:
            try:
                value = cookie_value(request.environ, self.settings.key_name)
            except UnicodeDecodeError:  # an outsider's bytes: no id
                return None
            return None if value is None else (value, None)
        for name in self.settings.key_names:
            value = request.headers.get(name)
            if value is not None and value.strip():
                return value.strip(), name.lower()
        return None

    def read_id(self, request: Request) -> SessionRef | None:
        """The request's session id, checked: the one reader of it.

        A cookie must hold a well-formed id (correctly signed when there is a
        secret), or, with ``legacy_sessions``, a 1.x id; a header a valid token.
        Sessions and the rate limiter both go through here (see ``KVSSession.ref``,
        which reads it once per request).
        """
        incoming = self.incoming(request)
        if incoming is None:
            return None
        value, header = incoming
        if self.uses_cookie:
            session_id = self.id_from_cookie(value)
            if session_id is not None:
                return SessionRef(session_id, self.storage_key(session_id))
            if self.settings.legacy_sessions and legacy.is_cookie_id(value):
                return SessionRef(value, self.storage_key(value), legacy=True)
            return None
        if not self.valid_token(value):
            return None
        return SessionRef(value, self.storage_key(value), header=header)

    def storage_key(self, session_id: str) -> str:
        """The store key of a session: a keyed hash, so a store dump reveals no id.

        The hash is in braces, the key's hash tag (``stores.hash_tags``): the rate
        limiter puts it in its keys of the session, so that on a Redis Cluster the
        record and the limits live on one node and load in one round trip.
        """
        mac = self._hashing_mac.copy()
        mac.update(session_id.encode("utf-8"))
        return "{" + mac.hexdigest() + "}"

    def legacy_key(self, ref: SessionRef) -> str | None:
        """Where 1.x kept the session of *ref*, when ``legacy_sessions`` is on."""
        if not self.settings.legacy_sessions:
            return None
        if ref.header is not None:
            return legacy.header_key(ref.header, ref.id)
        return legacy.cookie_key(ref.id) if ref.legacy else None

    # -- the record format -----------------------------------------------------------

    def encode_record(self, data: Mapping[str, Any], created: float) -> dict[str, bytes]:
        """The record fields of a session holding *data*, first stored at *created*.

        What a save writes; ``pyramid_kvs.testing`` seeds sessions with it.
        """
        for key in data:
            _check_key(key)
        fields = {key: self.codec.dumps(value) for key, value in data.items()}
        fields[CREATED_FIELD] = repr(float(created)).encode("ascii")
        return fields

    def decode_created(self, fields: Mapping[str, bytes]) -> float | None:
        """The creation time of a stored record; ``None`` when it has none.

        A record without one was re-created by an update that raced an
        ``invalidate()``: never a session.  ``ValueError`` when it is no finite time.
        """
        raw_created = fields.get(CREATED_FIELD)
        if raw_created is None:
            return None
        created = float(raw_created.decode("ascii"))
        if not math.isfinite(created):
            raise ValueError(f"creation time {created}")
        return created

    def decode_record(self, fields: Mapping[str, bytes]) -> tuple[float, dict[str, Any]] | None:
        """The creation time and data of a stored record, every value decoded.

        ``None`` as for ``decode_created``; ``ValueError`` when a value or the creation
        time does not decode.  (A request's session decodes its values lazily.)
        """
        created = self.decode_created(fields)
        if created is None:
            return None
        data = {name: self.codec.loads(value) for name, value in user_fields(fields).items()}
        return created, data

    def write_ttl(self, created: float, now: float) -> int | None:
        """The expiry of a write: the idle timeout, shortened by the lifetime cap."""
        ttl, lifetime = self.settings.ttl, self.settings.lifetime
        if lifetime is None:
            return ttl
        remaining = max(1, math.ceil(created + lifetime - now))
        return remaining if ttl is None else min(ttl, remaining)

    # -- loading -----------------------------------------------------------------------

    def queue_load(self, batch: Batch, ref: SessionRef) -> _Load:
        """Queue the load of *ref*'s session on *batch* (a batch of this store's client).

        The 1.x value is queued beside the record only where it costs no round trip
        of its own (a pipeline to one server: on a cluster its key, which has no hash
        tag, may live on another node); elsewhere ``load`` reads it when the record
        turns out to be missing.
        """
        legacy_key = self.legacy_key(ref)
        record = None
        if not ref.legacy:
            record = batch.load_record(ref.key, self.settings.ttl, store=self.store)
        old = None
        if legacy_key is not None and (ref.legacy or _one_round_trip(batch)):
            old = batch.get(legacy_key, store=self.store)
        return _Load(record, old)

    def load(
        self, ref: SessionRef, queued: _Load | None = None
    ) -> tuple[StoredRecord | None, bytes | None]:
        """The record of *ref* and, when it is missing, the value 1.x left.

        Taken from *queued* (a load another component's batch ran) if given, else
        from the store.  Raises ``StoreError`` when the store fails.
        """
        if queued is not None:
            try:
                return self._finish(ref, queued)
            except RuntimeError:  # that batch never ran: load it ourselves
                pass
        if ref.legacy or self.legacy_key(ref) is not None:
            batch = self.store.batch()
            if _one_round_trip(batch) or ref.legacy:
                queued = self.queue_load(batch, ref)
                batch.execute()
                return self._finish(ref, queued)
        record = self.store.load_record(ref.key, self.settings.ttl)
        return self._finish(ref, _Load(None, None), record)

    def _finish(
        self, ref: SessionRef, queued: _Load, record: StoredRecord | None = None
    ) -> tuple[StoredRecord | None, bytes | None]:
        if queued.record is not None:
            record = queued.record.value
        if queued.legacy is not None:
            return record, queued.legacy.value
        legacy_key = self.legacy_key(ref)
        if record is not None or legacy_key is None:
            return record, None
        return None, self.store.get(legacy_key)  # no pipeline: read only on a miss

    def _session_of(self, request: Request) -> KVSSession | None:
        """``request.session`` when this factory made it (not when the application
        replaced pyramid_kvs' session factory with another)."""
        session = request.session
        if isinstance(session, KVSSession) and session._factory is self:
            return session
        return None

    def ref_of(self, request: Request) -> SessionRef | None:
        """The request's checked session id, read once per request (see ``KVSSession.ref``)."""
        session = self._session_of(request)
        return self.read_id(request) if session is None else session.ref

    def prefetch(self, request: Request, batch: Batch) -> bool:
        """Queue the load of *request*'s session on *batch*; see ``KVSSession.prefetch``."""
        session = self._session_of(request)
        return session is not None and session.prefetch(batch)


@implementer(ISession)
class KVSSession(MutableMapping[str, Any]):
    """The session of one request: a dict of JSON-able values, loaded on first use.

    Keys are strings; names of the form ``__name__`` are reserved.
    """

    def __init__(self, factory: SessionFactory, request: Request) -> None:
        self._factory = factory
        # A weak reference: the request holds its session (request.session), and a
        # session holding its request would make each request a reference cycle,
        # left for the garbage collector instead of freed when the response leaves.
        self._request_ref = weakref.ref(request)
        self._loaded = False
        self._data: dict[str, Any] = {}
        #: the encoded value of each key as stored, to find what changed
        self._stored: dict[str, bytes] = {}
        #: the keys handed out or set: the only ones that can have changed
        self._touched: set[str] = set()
        #: the keys deleted (or dropped undecodable): the only ones a save may remove
        self._removed: dict[str, None] = {}
        #: the keys whose value in _data is still the stored bytes, not decoded yet
        self._pending: set[str] = set()
        self._base: StoredRecord | None = None
        #: the request's session id, read once (see ref)
        self._ref: SessionRef | None = None
        self._ref_read = False
        #: a load queued on another component's batch (see prefetch)
        self._prefetched: _Load | None = None
        #: the session id (cookie id or header token); None until one is needed
        self._id: str | None = None
        #: whether a record exists under _id (it was loaded from the store)
        self._persisted = False
        #: the data came from a session pyramid_kvs 1.x stored
        self._migrated = False
        self._created = 0.0
        #: store keys to delete when the response leaves (invalidated, rotated, 1.x)
        self._doomed: list[str] = []
        #: store the session even if empty (its id was rotated or bound, or it moved)
        self._force_write = False
        #: never write: the store failed, or the request ended in a 503 for it
        self._unsaved = False

    @property
    def _request(self) -> Request:
        request = self._request_ref()
        if request is None:
            raise RuntimeError("the request of this session has ended")
        return request

    @property
    def ref(self) -> SessionRef | None:
        """The session id the request carries, checked; read once per request.

        ``None`` when the request carries none that is well-formed (and correctly
        signed).  Reading it costs no round trip: the rate limiter keys its
        ``session`` holders by it without loading the session.
        """
        if not self._ref_read:
            self._ref = self._factory.read_id(self._request)
            self._ref_read = True
        return self._ref

    def prefetch(self, batch: Batch) -> bool:
        """Queue this session's load on *batch*, to spare the load a round trip.

        For components that send their own batch early in the request (the rate
        limiter): when the request carries a session id and *batch* runs on the
        session store's client (any key prefix), the load is queued on it and the
        first use of the session takes its result.  Returns whether it was queued.
        If the batch does not run, the session loads itself.
        """
        if self._loaded or self._prefetched is not None:
            return False
        ref = self.ref
        if ref is None or not batch.store.shares_client_with(self._factory.store):
            return False
        self._prefetched = self._factory.queue_load(batch, ref)
        return True

    # -- loading ---------------------------------------------------------------------

    def _start(self) -> SessionRef | None:
        """Mark the session as used: the response will save it.  The request's id."""
        self._loaded = True
        self._created = self._factory.clock()
        self._request.add_response_callback(self._on_response)
        return self.ref

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        ref = self._start()
        if ref is None:
            return
        factory = self._factory
        queued, self._prefetched = self._prefetched, None
        try:
            record, old = factory.load(ref, queued)
        except WrongKind as exc:
            log.warning("the stored session is not a record, starting a new one: %s", exc)
            self._start_under(ref)
            return
        except StoreError as exc:
            # unreachable, or an error reply (READONLY after a failover, OOM...): a
            # session taken for absent would be overwritten or logged out
            self._unsaved = True
            if factory.settings.on_unavailable == "error":
                log.error("session store unavailable, answering 503: %s", exc)
                raise SessionUnavailable("The session store is unavailable.") from exc
            log.error("session store unavailable, using an empty unsaved session: %s", exc)
            return
        if record is not None and self._adopt(ref, record):
            return
        if old is not None and self._migrate(ref, old):
            return
        if record is None:
            log.debug("a session id the store does not know")
        self._start_under(ref)

    def _start_under(self, ref: SessionRef) -> None:
        """A new session for a request whose id names none (or none usable).

        A cookie id is never adopted; a header token is, unless ``adopt_tokens`` is off.
        """
        if ref.header is not None and self._factory.settings.adopt_tokens:
            self._id = ref.id

    def _adopt(self, ref: SessionRef, record: StoredRecord) -> bool:
        """Take the session in *record*; ``False`` when it is unusable."""
        factory = self._factory
        fields = record.fields
        try:
            created = factory.decode_created(fields)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError
            log.warning("a stored session has no valid creation time, starting a new one: %s", exc)
            return False
        if created is None:
            # written by an update that raced with invalidate() or expiry
            log.info("a session record without its creation time: not adopted")
            self._doomed.append(ref.key)
            return False
        lifetime = factory.settings.lifetime
        if lifetime is not None and factory.clock() - created >= lifetime:
            log.debug("session past its lifetime of %ss: starting a new one", lifetime)
            self._doomed.append(ref.key)
            return False
        self._id = ref.id
        self._persisted = True
        self._base = record
        self._created = created
        # Values are decoded when first used: a request reads a few keys of a session
        # that may hold many, and only what it used can have changed.
        stored = user_fields(fields)
        self._stored = stored
        self._data = dict(stored)
        self._pending = set(stored)
        return True

    def _migrate(self, ref: SessionRef, old: bytes) -> bool:
        """Move the session pyramid_kvs 1.x stored as *old* into a new record.

        A cookie session gets a new id (a 1.x id is never kept: it may have been
        planted); a header session stays under its token.  The 1.x key is deleted
        when the new record is written.
        """
        factory = self._factory
        try:
            data = legacy.session_data(
                factory.codec.loads(old),
                flash_prefix=FLASH_KEY_PREFIX,
                csrf_key=CSRF_KEY,
                reserved=_RESERVED,
            )
        except ValueError as exc:
            log.warning(
                "a pyramid_kvs 1.x session does not decode as %s, not moved: %s",
                factory.codec.name,
                exc,
            )
            return False
        legacy_key = factory.legacy_key(ref)
        assert legacy_key is not None
        self._doomed.append(legacy_key)
        self._id = factory.new_id() if ref.header is None else ref.id
        self._data = data
        self._migrated = True
        self._force_write = True
        log.info("moved a pyramid_kvs 1.x session into a new record")
        return True

    # -- ISession ----------------------------------------------------------------------

    @property
    def created(self) -> float:
        """When the session was first stored (Unix time), or now for a new one."""
        self._ensure_loaded()
        return self._created

    @property
    def new(self) -> bool:
        """Whether this session was not loaded from the store (1.x sessions included)."""
        self._ensure_loaded()
        return not (self._persisted or self._migrated)

    def changed(self) -> None:
        """Accepted for Pyramid compatibility; never needed.

        Changes, in-place changes of nested values included, are found by comparing
        each key's encoded value with the bytes that were loaded.
        """
        self._ensure_loaded()

    def invalidate(self) -> None:
        """Forget the session: its record is deleted and its cookie expired.

        Writes made afterwards in the same request start a new session: under a new
        id for a cookie session, under the same token for a header session (the
        client keeps sending it).  Costs no load when the session was not read before.
        """
        factory = self._factory
        if not self._loaded:
            ref = self._start()
            if ref is not None:
                if not ref.legacy:
                    self._doomed.append(ref.key)
                legacy_key = factory.legacy_key(ref)
                if legacy_key is not None:
                    self._doomed.append(legacy_key)  # or the next request brings it back
        else:
            if self._persisted and self._id is not None:
                self._doomed.append(factory.storage_key(self._id))
            ref = self.ref
            legacy_key = None if ref is None else factory.legacy_key(ref)
            if legacy_key is not None and legacy_key not in self._doomed:
                self._doomed.append(legacy_key)
        self._data = {}
        self._stored = {}
        self._touched = set()
        self._pending = set()
        self._base = None
        self._id = None
        self._persisted = False
        self._migrated = False
        self._force_write = False
        self._created = factory.clock()
        ref = self.ref
        if ref is not None:
            self._start_under(ref)

    def regenerate_id(self) -> None:
        """Give the session a new id, keeping its data; the old id stops working.

        Call it when the user logs in (or gains privileges), so that an id an
        attacker planted or saw before the login is worthless afterwards.
        """
        if not self._factory.uses_cookie:
            raise RuntimeError("header sessions change token with update_session_token()")
        self._ensure_loaded()
        self._force_write = self._persisted or self._migrated or bool(self._data)
        self._move_to(self._factory.new_id())

    def update_session_token(self, header_name: str, value: str) -> None:
        """Bind this (header) session to the token *value* the application just issued.

        Later requests sending ``header_name: value`` get this session.  Its data
        moves to the new token; the record of the previous token, if any, is
        deleted.  *header_name* is one of the configured headers, in any case;
        *value* is visible ASCII, at least ``token_min_length`` and at most 4096
        characters.
        """
        factory = self._factory
        if factory.uses_cookie:
            raise RuntimeError("update_session_token() is for session_type = header")
        if not isinstance(header_name, str) or factory.header_name(header_name) is None:
            raise ValueError(
                f"{header_name!r} is not a session header; expected one of "
                f"{', '.join(factory.settings.key_names)}"
            )
        if not isinstance(value, str) or not factory.valid_token(value):
            raise ValueError(
                f"a session token is {factory.settings.token_min_length} to "
                f"{TOKEN_MAX_LENGTH} visible ASCII characters"
            )
        self._ensure_loaded()
        self._force_write = True
        if value != self._id:
            self._move_to(value)

    def _move_to(self, session_id: str) -> None:
        if self._persisted and self._id is not None:
            self._doomed.append(self._storage_key())
        self._id = session_id
        self._persisted = False
        self._stored = {}
        self._base = None

    # -- flash messages and CSRF tokens -------------------------------------------------

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        """Add *msg* to the flash queue *queue* (unless already there and not allowed)."""
        messages = self.setdefault(FLASH_KEY_PREFIX + queue, [])
        if allow_duplicate or msg not in messages:
            messages.append(msg)

    def pop_flash(self, queue: str = "") -> list[Any]:
        """Take every message of *queue*, emptying it."""
        return self.pop(FLASH_KEY_PREFIX + queue, [])  # type: ignore[no-any-return]

    def peek_flash(self, queue: str = "") -> list[Any]:
        """The messages of *queue*, leaving them in place."""
        return list(self.get(FLASH_KEY_PREFIX + queue, []))

    def new_csrf_token(self) -> str:
        """Make, store and return a new CSRF token (256 random bits)."""
        token = secrets.token_urlsafe(32)
        self[CSRF_KEY] = token
        return token

    def get_csrf_token(self) -> str:
        """The session's CSRF token, made on first use."""
        token = self.get(CSRF_KEY)
        if not isinstance(token, str):
            token = self.new_csrf_token()
        return token

    # -- the mapping API ------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._ensure_loaded()
        value = self._decode(key) if key in self._pending else self._data[key]
        if type(value) not in _IMMUTABLE:
            self._touched.add(key)  # handed out: it may be changed in place
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        _check_key(key)
        self._ensure_loaded()
        self._data[key] = value
        self._pending.discard(key)
        self._touched.add(key)

    def __delitem__(self, key: str) -> None:
        self._ensure_loaded()
        del self._data[key]
        self._pending.discard(key)
        self._removed[key] = None

    def __iter__(self) -> Iterator[str]:
        self._decode_all()
        return iter(self._data)

    def __len__(self) -> int:
        self._decode_all()
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._ensure_loaded()
        if key in self._pending:
            with contextlib.suppress(KeyError):  # a value that does not decode
                self._decode(key)
        return key in self._data

    def _decode(self, key: str) -> Any:
        """The value of *key*, decoded now; a value that does not decode is dropped
        (and removed from the store when the session is saved), with a warning."""
        self._pending.discard(key)
        try:
            value = self._factory.codec.loads(self._data[key])
        except ValueError as exc:
            log.warning(
                "a stored session value does not decode as %s, dropped: %s",
                self._factory.codec.name,
                exc,
            )
            del self._data[key]
            self._removed[key] = None
            raise KeyError(key) from None
        self._data[key] = value
        return value

    def _decode_all(self) -> None:
        """Decode every value still encoded: before the keys are listed or counted, so
        that a value which does not decode is never listed."""
        self._ensure_loaded()
        for key in list(self._pending):
            with contextlib.suppress(KeyError):  # dropped, and warned about
                self._decode(key)

    def has_key(self, key: str) -> bool:
        """``key in session``, under the name 1.x also offered (deprecated)."""
        warnings.warn(
            "session.has_key(key) is deprecated: use `key in session`",
            DeprecationWarning,
            stacklevel=2,
        )
        return key in self

    def __repr__(self) -> str:
        if not self._loaded:
            return "<KVSSession not loaded>"
        shown = {key: "<not decoded>" if key in self._pending else value
                 for key, value in self._data.items()}  # fmt: skip
        return f"<KVSSession {shown!r}>"

    # -- saving ------------------------------------------------------------------------

    def _on_response(self, request: Request, response: Response) -> None:
        factory = self._factory
        add_vary(response, factory.vary_headers)
        if self._unsaved:
            return
        refusal = getattr(request, "exception", None)
        if isinstance(refusal, CSRF_REFUSALS):
            # nothing stored, no cookie set or expired: see CSRF_REFUSALS
            log.debug("a refused request (%s): its session is not saved", type(refusal).__name__)
            return
        try:
            self._save(response)
        except StoreError as exc:
            if factory.settings.on_unavailable == "error":
                log.error("session not saved, answering 503: %s", exc)
                _make_unavailable(response)
            else:
                log.error("session not saved: %s", exc)

    def _save(self, response: Response) -> None:
        factory = self._factory
        now = factory.clock()
        ttl = factory.write_ttl(self._created, now)
        if self._persisted:
            assert self._id is not None
            # Only the keys handed out or set can have changed: each is encoded and
            # compared with what was loaded, so the work follows what the view did,
            # not the size of the session.
            dumps, stored, data = factory.codec.dumps, self._stored, self._data
            changed = {}
            for key in self._touched:
                if key in data:
                    encoded_value = dumps(data[key])
                    if stored.get(key) != encoded_value:
                        changed[key] = encoded_value
            removed = [key for key in self._removed if key in stored and key not in data]
            if changed or removed:
                factory.store.update_record(
                    self._storage_key(), changed, removed, ttl, base=self._base
                )
            if factory.settings.cookie_max_age is not None and factory.uses_cookie:
                self._set_cookie(response)  # keep the browser's expiry sliding too
            return
        pending = self._pending
        encoded = {
            key: value if key in pending else factory.codec.dumps(value)
            for key, value in self._data.items()
        }
        if (encoded or self._force_write) and self._id is None and factory.uses_cookie:
            self._id = factory.new_id()
        if (encoded or self._force_write) and self._id is not None:
            fields = {**encoded, CREATED_FIELD: repr(self._created).encode("ascii")}
            with factory.store.batch() as batch:
                writes: list[Pending[Any]] = [batch.delete(key) for key in self._doomed]
                writes.append(batch.replace_record(self._storage_key(), fields, ttl))
            _confirm(writes)
            if factory.uses_cookie:
                self._set_cookie(response)
            return
        if encoded:
            log.debug("a header session without a token is not saved")
        if self._doomed:
            with factory.store.batch() as batch:
                deletes = [batch.delete(key) for key in self._doomed]
            _confirm(deletes)
        if factory.uses_cookie and factory.incoming(self._request) is not None:
            self._set_cookie(response, expire=True)

    def _storage_key(self) -> str:
        """The store key of the session's id: the request's own, computed once, while
        the id is the one the request carried."""
        ref = self._ref
        if ref is not None and ref.id == self._id:
            return ref.key
        assert self._id is not None
        return self._factory.storage_key(self._id)

    def _set_cookie(self, response: Response, expire: bool = False) -> None:
        factory = self._factory
        settings = factory.settings
        value = None if expire or self._id is None else factory.cookie_value(self._id)
        if value is not None and factory.set_cookie_parts is not None:
            before, after = factory.set_cookie_parts
            response.headerlist.append(("Set-Cookie", before + value + after))
            return
        response.set_cookie(
            settings.key_name,
            value,
            max_age=None if value is None else settings.cookie_max_age,
            **factory.cookie_attributes,
        )


def user_fields(fields: Mapping[str, bytes]) -> dict[str, bytes]:
    """The fields of a record that hold the application's keys (not ``__name__``)."""
    return {
        name: value
        for name, value in fields.items()
        if name[:2] != "__" or not _RESERVED.match(name)
    }


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"session keys are strings, not {type(key).__name__}")
    if _RESERVED.match(key):
        raise ValueError(f"session keys of the form __name__ are reserved: {key!r}")


def _one_round_trip(batch: Batch) -> bool:
    """Whether any key queued on *batch* rides in one round trip with the others."""
    return batch.pipelined and not batch.sharded


def _confirm(writes: list[Pending[Any]]) -> None:
    """Raise the error of any write of a batch that failed: a pipeline reports each
    command's error in its own reply, and nothing may be reported saved that was not."""
    for write in writes:
        write.value  # noqa: B018 - raises the operation's error


def _make_unavailable(response: Response) -> None:
    """Turn *response*, already built by the view, into a 503: its data was not saved."""
    response.status = "503 Service Unavailable"
    response.content_type = "text/plain"
    response.charset = "utf-8"
    response.text = "The session store is unavailable: nothing was saved."
    while "Set-Cookie" in response.headers:  # no cookie for data that was not saved
        response.headers.pop("Set-Cookie")
