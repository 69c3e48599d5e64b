"""``request.perlsess``: the session a Perl application keeps in a shared store.

A site moving from Perl to Pyramid runs both for a while, behind one domain: the
Perl side keeps writing its sessions into memcached or Redis, and Pyramid pages
need to know who is logged in.  This module reads those sessions, read-only, the
way the Perl stacks actually store them:

* **Cache::Memcached and Cache::Memcached::Fast** mark values with memcached client
  flags: 1 (the value was serialized, by default with Storable's ``nfreeze``),
  2 (gzip-compressed, once larger than ``compress_threshold``), 4 (a Perl character
  string stored as UTF-8, Cache::Memcached::Fast's ``utf8`` option).
  Plack::Session::Store::Cache over them stores the session hash this way.
* **Raw Storable bytes** with flags 0: CGI::Session (``serializer:storable``) and
  Apache::Session serialize the hash themselves and store a plain string.
* **``pst0`` files** (``Storable::store``/``nstore``, Plack::Session::Store::File)
  copied into the store, and **Base64-wrapped Storable**
  (Apache::Session::Serialize::Base64), newlines included.
* **JSON** (``codec = json``) for sites whose serializer writes JSON.

The decoding is a pipeline of small pure functions - flags, then decompression,
then unwrapping, then ``thaw`` - each bounded: the value
comes from a store another application writes to and the session id from a cookie
anyone can forge, so the cookie is checked before the store is asked, and the
value's size is capped before it is downloaded (Redis and memcached announce it
first: see ``Store.get_bounded``) and again after
decompression (a few kilobytes of gzip can expand to gigabytes).

Reading never breaks a request: a missing cookie, a missing key, a value that does
not decode or an unreachable store all give an empty session and a logged warning.
Log lines show only the first characters of a session id: the full id is a
credential.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import re
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from pyramid.request import Request

from .codecs import load_json
from .cookies import cookie_value
from .settings import (
    StoreSpec,
    one_of,
    parse_component,
    setting,
    to_key_prefix,
    to_positive_int,
    to_str,
)
from .storable import MAX_MINOR, PerlObject, perl_number, thaw
from .storable import nfreeze as storable_nfreeze
from .stores import Store, StoreError, ValueTooLarge

__all__ = [
    "FLAG_COMPRESSED",
    "FLAG_STORABLE",
    "FLAG_UTF8",
    "PerlSession",
    "PerlSessionError",
    "PerlSessionReader",
    "apply_cgi_session_expiry",
    "decode_session",
    "decompress",
    "unwrap_flags",
    "unwrap_storable",
]

log = logging.getLogger(__name__)

#: memcached client flags of Cache::Memcached (1, 2) and Cache::Memcached::Fast (1, 2, 4)
FLAG_STORABLE = 1
FLAG_COMPRESSED = 2
FLAG_UTF8 = 4
KNOWN_FLAGS = FLAG_STORABLE | FLAG_COMPRESSED | FLAG_UTF8

#: session ids the Perl stacks generate are hex (CGI::Session, Apache::Session: MD5;
#: Plack::Session: SHA-1) or Base64 (standard or URL-safe); anything else in a cookie
#: is forged or broken
SESSION_ID = re.compile(r"[A-Za-z0-9_+/=-]{1,128}")
#: nesting a session hash may have; Perl sessions are shallow
MAX_DEPTH = 64

_BASE64 = re.compile(rb"[A-Za-z0-9+/=\s]+")


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
    key_prefix: str = setting("perlsess::", to_key_prefix)
    #: the cookie holding the session id (CGI::Session: CGISESSID, Plack: plack_session)
    cookie_name: str = setting("session_id", to_cookie_name)
    #: how the Perl side serialized the session: "storable" or "json"
    codec: str = setting("storable", one_of("storable", "json"))
    #: bytes a stored value may have, compressed and again decompressed
    max_size: int = setting(1024 * 1024, to_positive_int)


def parse_perlsess(settings: Mapping[str, Any]) -> PerlSessionSettings | None:
    """``kvs.perlsess`` as ``PerlSessionSettings``, or ``None`` when not configured."""
    return parse_component(settings, "perlsess", PerlSessionSettings)


class PerlSessionError(ValueError):
    """A stored value that is not a session this module can read."""


# -- the decoding pipeline -------------------------------------------------------------


def decompress(data: bytes, max_size: int) -> bytes:
    """Inflate gzip (Cache::Memcached's ``memGzip``) or zlib data, to at most *max_size*.

    The cap is enforced while inflating, so a decompression bomb costs at most
    *max_size* bytes of memory.
    """
    if data[:2] == b"\x1f\x8b":
        wbits = 16 + zlib.MAX_WBITS
    elif len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0:
        wbits = zlib.MAX_WBITS
    else:
        raise PerlSessionError("flagged as compressed but neither gzip nor zlib data")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise PerlSessionError(f"corrupt compressed data ({exc})") from None
    if len(out) > max_size or inflater.unconsumed_tail:
        raise PerlSessionError(f"decompresses to more than max_size={max_size} bytes")
    if not inflater.eof:
        raise PerlSessionError("truncated compressed data")
    return out


def unwrap_flags(data: bytes, flags: int, max_size: int) -> bytes | str:
    """The serialized session in *data*, as the Perl client's *flags* describe it.

    Returns ``bytes``, or ``str`` for a value flagged UTF-8 (a Perl character
    string, which is what the serializer then reads).
    """
    if flags & ~KNOWN_FLAGS:
        raise PerlSessionError(f"unknown memcached flags {flags} (not a Perl client's value)")
    if len(data) > max_size:
        raise PerlSessionError(f"{len(data)} bytes exceed max_size={max_size}")
    if flags & FLAG_COMPRESSED:
        data = decompress(data, max_size)
    if flags & FLAG_UTF8:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise PerlSessionError("flagged UTF-8 but not valid UTF-8") from None
    return data


def looks_like_storable(data: bytes) -> bool:
    """Whether *data* starts like Storable output (a ``pst0`` file or frozen data)."""
    if data[:4] == b"pst0":
        data = data[4:]
    # major version 2, native (4) or network (5) order, a minor Storable writes
    return len(data) >= 2 and data[0] in (4, 5) and data[1] <= MAX_MINOR


def unwrap_storable(value: bytes | str) -> bytes:
    """The Storable bytes in *value*: as they are, or Base64-decoded.

    A ``str`` (a value stored as a Perl character string) stands for the Perl byte
    string with the same code points, which is what Perl's ``thaw`` reads.
    """
    if isinstance(value, str):
        try:
            value = value.encode("latin-1")
        except UnicodeEncodeError:
            raise PerlSessionError("a text value that cannot be Storable data") from None
    if looks_like_storable(value):
        return value
    if _BASE64.fullmatch(value):
        try:
            decoded = base64.b64decode(b"".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if looks_like_storable(decoded):
            return decoded
    raise PerlSessionError("not Storable data (nor a pst0 file, nor Base64 of either)")


def _load_json(value: bytes | str) -> Any:
    try:
        return load_json(value)
    except ValueError as exc:  # malformed, bad UTF-8, too deep, too many digits
        raise PerlSessionError(str(exc)) from None


def decode_session(
    data: bytes, flags: int = 0, *, codec: str = "storable", max_size: int = 1024 * 1024
) -> dict[Any, Any]:
    """The session hash stored as *data* with memcached *flags*, as a ``dict``.

    Strings come back as ``str`` when they are valid UTF-8, ``bytes`` otherwise (see
    ``thaw``).  A hash blessed into a class is read as the
    hash.  Raises ``PerlSessionError`` for anything else.
    """
    serialized = unwrap_flags(data, flags, max_size)
    if codec == "json":
        value = _load_json(serialized)
    elif codec == "storable":
        value = thaw(unwrap_storable(serialized), max_depth=MAX_DEPTH, max_size=max_size)
    else:
        raise ValueError(f"unknown Perl session codec {codec!r}")
    if isinstance(value, PerlObject):
        value = value.value
    if not isinstance(value, dict):
        raise PerlSessionError(f"the session is a {type(value).__name__}, not a Perl hash")
    return value


def _seconds(value: Any) -> float | None:
    """A CGI::Session time field as seconds; ``None`` when it is no usable number.

    Whatever the field holds - text of any length, a 64-bit integer, a Storable
    double that is NaN or infinite, a Python integer of a thousand digits from
    JSON, a list - the answer is a finite float or ``None``, never an exception:
    the session comes from a store other programs write.
    """
    if isinstance(value, str):
        value = perl_number(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer no clock reaches
        return None
    return seconds if math.isfinite(seconds) else None


def apply_cgi_session_expiry(session: dict[Any, Any], now: float) -> dict[Any, Any] | None:
    """*session* as CGI::Session would load it at *now*; ``None`` when it expired.

    CGI::Session keeps its expiry in the session itself: the whole session expires
    ``_SESSION_ETIME`` seconds after its last access (``_SESSION_ATIME``), and each
    parameter named in ``_SESSION_EXPIRE_LIST`` that long after it.  Sessions without
    these fields are returned unchanged, and so are fields that hold no usable
    number (text that is not a canonical Perl number, NaN, infinities, values
    beyond a float's range) and an ``_SESSION_EXPIRE_LIST`` that is not a hash:
    each is treated as absent.
    """
    atime = _seconds(session.get("_SESSION_ATIME"))
    if atime is None:
        return session
    etime = _seconds(session.get("_SESSION_ETIME"))
    if etime and atime + etime <= now:
        return None
    expire_list = session.get("_SESSION_EXPIRE_LIST")
    if not isinstance(expire_list, dict):
        return session
    expired = [
        name
        for name, interval in expire_list.items()
        if (seconds := _seconds(interval)) is not None and atime + seconds <= now
    ]
    if not expired:
        return session
    kept = {key: value for key, value in session.items() if key not in expired}
    kept["_SESSION_EXPIRE_LIST"] = {
        name: interval for name, interval in expire_list.items() if name not in expired
    }
    return kept


def redact(session_id: str) -> str:
    """A session id as it may appear in logs: its first characters only."""
    return session_id[:6] + "..."


# -- the request API -----------------------------------------------------------------


class PerlSession(Mapping[Any, Any]):
    """One request's view of the Perl session: a read-only mapping, loaded lazily.

    Nothing is read until the mapping is first used (``session["user"]``, ``in``,
    ``len``, iteration, ``expired``), and then exactly once, with one round
    trip.  ``session_id`` needs no round trip.  The session is never written
    back: changes belong to the Perl application that owns it.
    """

    __slots__ = ("_data", "_environ", "_expired", "_reader", "_session_id")

    def __init__(
        self,
        reader: PerlSessionReader,
        session_id: str | None = None,
        *,
        request: Request | None = None,
    ) -> None:
        self._reader = reader
        #: with *request*, the id is read from its cookie on first use: its environ
        #: is kept, not the request, which holds this view (request.perlsess) - no
        #: reference cycle
        self._environ = None if request is None else request.environ
        self._session_id = session_id
        self._data: dict[Any, Any] | None = None
        self._expired = False

    @property
    def session_id(self) -> str | None:
        """The session id from the cookie, ``None`` when absent or malformed."""
        if self._environ is not None:
            environ, self._environ = self._environ, None
            self._session_id = self._reader.session_id_in(environ)
        return self._session_id

    @property
    def loaded(self) -> bool:
        """Whether the store has been asked (the first use of the mapping asks it)."""
        return self._data is not None

    def _session(self) -> dict[Any, Any]:
        if self._data is None:
            data, self._expired = self._reader.load(self.session_id)
            self._data = data
        return self._data

    @property
    def expired(self) -> bool:
        """Whether the stored session had expired by CGI::Session's own fields."""
        self._session()
        return self._expired

    def __getitem__(self, key: Any) -> Any:
        return self._session()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._session())

    def __len__(self) -> int:
        return len(self._session())

    def __contains__(self, key: object) -> bool:
        return key in self._session()

    def has_key(self, key: object) -> bool:
        """``key in perlsess``, under the name 1.x also offered (deprecated)."""
        warnings.warn(
            "perlsess.has_key(key) is deprecated: use `key in request.perlsess`",
            DeprecationWarning,
            stacklevel=2,
        )
        return key in self

    def __repr__(self) -> str:
        state = repr(self._data) if self._data is not None else "not loaded"
        shown = None if self.session_id is None else redact(self.session_id)
        return f"<PerlSession {shown}: {state}>"


class PerlSessionReader:
    """Reads Perl sessions from one store, as configured; built once per application."""

    def __init__(
        self,
        store: Store,
        settings: PerlSessionSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    def session_id_in(self, environ: MutableMapping[str, Any]) -> str | None:
        """The session id in the cookie of a request (its WSGI *environ*), or ``None``
        if there is none usable.

        No cookie is the normal case of a visitor who never logged in on the Perl
        side: it is logged at DEBUG only, or every such request would warn.  A cookie
        that is there but malformed is worth a warning.
        """
        name = self.settings.cookie_name
        try:
            value = cookie_value(environ, name)
        except UnicodeDecodeError:
            log.warning("perlsess: ignored a Cookie header that is not UTF-8")
            return None
        if not value:
            log.debug("perlsess: no %s cookie: the Perl session is empty", name)
            return None
        if not SESSION_ID.fullmatch(value):
            # never log the value itself: it is attacker-controlled
            log.warning(
                "perlsess: ignored a malformed %s cookie (%d characters)", name, len(value)
            )
            return None
        return value

    def for_request(self, request: Request) -> PerlSession:
        """The lazy ``PerlSession`` of *request* (what ``request.perlsess`` is)."""
        return PerlSession(self, request=request)

    def load(self, session_id: str | None) -> tuple[dict[Any, Any], bool]:
        """The session stored under *session_id*, and whether it had expired.

        One round trip (none without a session id).  Never raises: bad data, a
        value over ``max_size`` (refused before it is downloaded, where the store
        allows) and an unreachable store give an empty session and a warning; an
        unexpected error, which would be a bug, an empty session and a logged error
        with its traceback.
        """
        if session_id is None:
            return {}, False
        try:
            return self._load(session_id)
        except Exception:
            log.exception("perlsess: session %s not read, unexpected error", redact(session_id))
            return {}, False

    def _load(self, session_id: str) -> tuple[dict[Any, Any], bool]:
        shown = redact(session_id)
        max_size = self.settings.max_size
        try:
            data = self.store.get_bounded(session_id, max_size)
        except ValueTooLarge as exc:
            log.warning(
                "perlsess: session %s is unreadable: %s bytes exceed max_size=%s (not read)",
                shown,
                exc.size,
                max_size,
            )
            return {}, False
        except StoreError as exc:
            log.warning("perlsess: session %s not read, store error: %s", shown, exc)
            return {}, False
        if data is None:
            # expired or logged out on the Perl side: routine, but a wrong key_prefix
            # looks the same, so it stays visible at INFO
            log.info("perlsess: no session %s in the store", shown)
            return {}, False
        try:
            session = decode_session(
                data, getattr(data, "flags", 0), codec=self.settings.codec, max_size=max_size
            )
            current = apply_cgi_session_expiry(session, self.clock())
        except ValueError as exc:  # PerlSessionError, StorableError
            log.warning("perlsess: session %s is unreadable: %s", shown, exc)
            return {}, False
        if current is None:
            log.info("perlsess: session %s has expired (CGI::Session _SESSION_ETIME)", shown)
            return {}, True
        return current, False

    def write(
        self,
        session_id: str,
        session: Mapping[Any, Any],
        *,
        ttl: int | None = None,
        memcached_flags: int = FLAG_STORABLE,
    ) -> None:
        """Store *session* for the Perl side to read, frozen with ``nfreeze``.

        With the default *memcached_flags* Cache::Memcached (and Plack's session
        store over it) thaws the value itself; use ``0`` for stacks that thaw it
        themselves (CGI::Session, Apache::Session).  Other stores ignore the flags.
        Raises ``StoreError`` when the store fails.
        """
        if not SESSION_ID.fullmatch(session_id):
            raise ValueError("a session id is 1 to 128 letters, digits or _+/=-")
        value = storable_nfreeze(dict(session))
        self.store.set(session_id, _flagged(value, memcached_flags), ttl)


def _flagged(value: bytes, flags: int) -> bytes:
    """*value* carrying memcached client *flags* (read by the memcached store only)."""
    if not flags:
        return value
    try:
        from .stores.memcached import FlaggedBytes
    except ImportError:  # no pymemcache, so no memcached store to read the flags
        return value
    flagged = FlaggedBytes(value)
    flagged.flags = flags
    return flagged
