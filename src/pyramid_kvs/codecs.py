"""Codecs: how values become the bytes a store keeps.

A codec is any object with ``dumps(value) -> bytes`` and ``loads(bytes) -> value``
whose ``loads`` raises ``ValueError`` on bad input (the contract of Pyramid's session
serializers).  JSON is the default because it cannot run code when read: a store
shared with other applications, or written by an attacker who reached it, must not
turn into remote code execution.  ``pickle`` is an explicit opt-in for trusted
stores, and ``msgpack`` a compact option.

There is deliberately no fallback between codecs (the original add-on tried
``pickle.loads`` when JSON failed, which re-opened the hole JSON closes): a value
that does not decode is reported as such, and callers treat it as a miss.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol


class Codec(Protocol):
    """Turns values into bytes and back."""

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JSONCodec:
    """Compact UTF-8 JSON; only JSON types round-trip (tuples come back as lists)."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"not valid JSON: {exc}") from exc


class PickleCodec:
    """Python pickle: any picklable value, for stores only trusted code can write."""

    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        try:
            return pickle.loads(data)
        except Exception as exc:  # a corrupt pickle raises nearly anything
            raise ValueError(f"not a valid pickle: {exc}") from exc


class MsgpackCodec:
    """MessagePack (needs the ``msgpack`` extra): JSON's types, smaller and faster."""

    name = "msgpack"

    def __init__(self) -> None:
        import msgpack

        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        return self._msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:
            raise ValueError(f"not valid msgpack: {exc}") from exc


_CODECS: dict[str, tuple[type, str | None]] = {
    "json": (JSONCodec, None),
    "pickle": (PickleCodec, None),
    "msgpack": (MsgpackCodec, "msgpack"),
}


def codec_names() -> list[str]:
    return sorted(_CODECS)


def get_codec(name: str) -> Codec:
    """The codec called *name*; ``KeyError`` if unknown, ``ImportError`` if not installed."""
    codec_class, extra = _CODECS[name]
    try:
        return codec_class()  # type: ignore[no-any-return]
    except ImportError as exc:
        raise ImportError(f"the {name} codec needs pyramid-kvs[{extra}]") from exc
