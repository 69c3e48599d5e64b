"""Codecs: how values become the bytes a store keeps.

A codec is any object with ``dumps(value) -> bytes`` and ``loads(bytes) -> value``
whose ``loads`` raises ``ValueError`` on bad input, and nothing else (the contract of
Pyramid's session serializers).  Stored bytes are not trusted: another application
sharing the store, or an attacker who reached it, may have written them, so every
``loads`` turns whatever goes wrong - malformed data, nesting deep enough to exhaust
the stack, numbers too long to convert - into a ``ValueError`` that callers treat as
a miss, never a 500.

JSON is the default because it cannot run code when read.  ``pickle`` can: with a
secret, pickled values are signed (HMAC-SHA256) and a value without a valid
signature is refused before ``pickle.loads`` ever sees it; without one, pickle is
for stores nobody else can write, and start-up warns (see
``UnsignedPickleWarning``).  ``msgpack`` is a compact option.

There is deliberately no fallback between codecs (the original add-on tried
``pickle.loads`` when JSON failed, which re-opened the hole JSON closes): a value
that does not decode is reported as such, and callers treat it as a miss.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from typing import Any, Protocol


class Codec(Protocol):
    """Turns values into bytes and back."""

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class UnsignedPickleWarning(UserWarning):
    """The pickle codec runs without a secret: whoever writes the store runs code."""


# One encoder and one decoder, built once: json.dumps and json.loads rebuild theirs
# (and sniff the encoding of bytes) at every call, which costs more than the work on
# the small values sessions and caches hold.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_DECODE = json.JSONDecoder().decode


def load_json(data: bytes | str) -> Any:
    """``json.loads`` for untrusted input: every failure is a ``ValueError``.

    Deep nesting needs no scan of its own: CPython's decoder checks the recursion
    depth at every level, so ``[[[[...`` ends in a ``RecursionError`` at the
    interpreter's recursion limit (1000 by default), turned here into a
    ``ValueError``.  A scan before parsing would cost as much as the parse.
    Integers longer than Python's int-from-string limit (4300 digits) raise a
    ``ValueError`` of their own, also reported as invalid JSON.
    """
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")  # what every writer here wrote: no detection
        return _DECODE(data)
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError, bad UTF-8, digit limit
        raise ValueError(f"not valid JSON: {exc}") from None


class JSONCodec:
    """Compact UTF-8 JSON; only JSON types round-trip (tuples come back as lists)."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        return _ENCODE(value).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return load_json(data)


#: what precedes the signature of a signed pickle: a format version, so that a
#: later format (or an unsigned pickle) is told apart from a forged signature
SIGNED_PICKLE_MAGIC = b"kvs1"
_MAC_SIZE = hashlib.sha256().digest_size


class PickleCodec:
    """Python pickle: any picklable value; signed with HMAC-SHA256 given a secret.

    ``pickle.loads`` runs whatever code the bytes name, so with a *secret* each
    value is stored as ``kvs1`` + HMAC-SHA256 of the pickle + the pickle, and
    ``loads`` refuses a value whose MAC does not verify before unpickling it.
    The MAC key is derived from the secret and *purpose* (``"kvs.cache"``,
    ``"kvs.session"``), so it signs nothing else the same secret signs (session
    cookies), and a value of one component is not accepted by another.

    The MAC covers the value, not the key it is stored under: whoever can write
    the store can still copy a signed value from one key to another, but can only
    make the application unpickle bytes the application itself pickled.
    Without a secret, values are plain pickles (the original add-on's format), for
    stores only trusted code can write.
    """

    name = "pickle"

    def __init__(self, secret: str | None = None, purpose: str = "") -> None:
        self.signed = secret is not None
        self._key = b""
        if secret is not None:
            # Sessions publish HMAC(secret, id) as store keys; the NUL byte, which no
            # session id or token may hold, keeps this key from ever being one.
            label = b"pyramid_kvs pickle codec v1\x00" + purpose.encode("utf-8")
            self._key = hmac.new(secret.encode("utf-8"), label, hashlib.sha256).digest()

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def dumps(self, value: Any) -> bytes:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if not self.signed:
            return data
        return SIGNED_PICKLE_MAGIC + self._mac(data) + data

    def loads(self, data: bytes) -> Any:
        if self.signed:
            data = self._verified(data)
        try:
            return pickle.loads(data)
        except Exception as exc:  # a corrupt pickle raises nearly anything
            raise ValueError(f"not a valid pickle: {exc}") from exc

    def _verified(self, data: bytes) -> bytes:
        """The pickle inside signed *data*; ``ValueError`` unless the MAC verifies."""
        if not isinstance(data, bytes):
            raise ValueError(f"not a signed pickle: {type(data).__name__}, not bytes")
        magic = len(SIGNED_PICKLE_MAGIC)
        if not data.startswith(SIGNED_PICKLE_MAGIC) or len(data) < magic + _MAC_SIZE:
            raise ValueError("not a signed pickle: refused without unpickling it")
        mac, payload = data[magic : magic + _MAC_SIZE], data[magic + _MAC_SIZE :]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise ValueError("pickle signature does not verify: refused without unpickling it")
        return payload


class MsgpackCodec:
    """MessagePack (needs the ``msgpack`` extra): JSON's types, smaller and faster.

    Its unpacker is bounded by itself: nesting beyond its fixed stack (1024 levels)
    raises ``StackError``, and no length may exceed the input's.
    """

    name = "msgpack"

    def __init__(self) -> None:
        import msgpack

        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        return self._msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # ValueError subclasses, TypeError (unhashable keys)...
            raise ValueError(f"not valid msgpack: {type(exc).__name__}: {exc}") from exc


_CODECS: dict[str, tuple[type, str | None]] = {
    "json": (JSONCodec, None),
    "pickle": (PickleCodec, None),
    "msgpack": (MsgpackCodec, "msgpack"),
}


def codec_names() -> list[str]:
    return sorted(_CODECS)


def get_codec(name: str, *, secret: str | None = None, purpose: str = "") -> Codec:
    """The codec called *name*; ``KeyError`` if unknown, ``ImportError`` if not installed.

    *secret* and *purpose* sign pickled values (see ``PickleCodec``); the
    other codecs cannot run code when read and ignore them.
    """
    codec_class, extra = _CODECS[name]
    try:
        if codec_class is PickleCodec:
            return PickleCodec(secret, purpose)
        return codec_class()  # type: ignore[no-any-return]
    except ImportError as exc:
        raise ImportError(f"the {name} codec needs pyramid-kvs[{extra}]") from exc
