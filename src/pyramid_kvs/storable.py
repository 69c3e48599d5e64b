"""Read and write Perl ``Storable`` binary data (``freeze``/``nfreeze``/``store``/``nstore``).

Why this module is hand-written
-------------------------------
Sites migrating from Perl keep their sessions in memcached or redis as
``Storable`` blobs, and a Python application sharing those stores must read
(and sometimes write) them.  Nothing well kept exists in Python for that: the
PyPI ``storable`` package (1.2.4) is unmaintained and decodes Perl 5.36 output
wrongly (``nfreeze([-129])`` comes back as ``[4294967167]``, and it turns
Perl strings into numbers), and the other implementations are GPL or
abandoned.  The format is
small and documented by Perl's own ``Storable.xs``, so this module implements
it directly, with the safety properties a session reader needs (the blobs come
from a shared store and must be treated as untrusted input).

Format summary (Storable binary major 2, minor up to 12)
--------------------------------------------------------
``[b"pst0"] <major<<1 | netorder> <minor>``, then for native order
``<len> <byteorder string> <sizeof int> <sizeof long> <sizeof ptr> [<sizeof NV>]``,
then one serialized value.  Every retrieved Perl SV receives the next *tag*
(pre-order), and ``SX_OBJECT <tag>`` refers back to it; that is how shared and
cyclic structures are encoded.  Tags are always big-endian, lengths follow the
byte order of the blob.

Python view of Perl values (what ``thaw`` returns)
------------------------------------------------------
The root of a blob (Perl freezes a *reference*) is returned as the referenced
value itself: ``nfreeze(\\%h)`` thaws to a ``dict``.

* undef -> ``None``; integers -> ``int``; native doubles -> ``float``;
  ``PL_sv_yes``/``PL_sv_no`` and the boolean opcodes -> ``True``/``False``.
* strings: UTF-8 flagged -> ``str``; other strings depend on ``text``:
  ``"auto"`` (default) gives ``str`` when the bytes are valid UTF-8 (legacy
  sites store UTF-8 without the flag) and ``bytes`` otherwise; ``"str"``
  always gives ``str`` (invalid UTF-8 is read as Latin-1, which is what Perl
  itself means by a byte string); ``"bytes"`` keeps unflagged strings as
  ``bytes``.  Numbers that ``nfreeze`` wrote as decimal strings stay strings,
  exactly as Perl reads them, unless ``numeric_strings=True`` (see
  ``perl_number``).
* arrays -> ``list``, hashes -> ``dict`` (placeholder keys of restricted hashes
  are skipped, as Perl hides them).
* a reference to an array, hash, blessed thing, code or regexp is represented
  by that Python object itself (Python containers are already references); a
  reference to a plain scalar (or to another reference) is a ``PerlRef``.
  Two Perl references to the same scalar share one ``PerlRef``.  Weak and
  overloaded references are read like ordinary references.
* blessed values -> ``PerlObject`` ``(class_name, value)``; objects stored
  by a ``STORABLE_freeze`` hook -> ``PerlObject(class_name, PerlHook(...))``;
  ``qr//`` -> ``PerlRegexp``; code (``$Storable::Deparse``) ->
  ``PerlCode`` (text only, never evaluated); tied variables and tied
  elements -> ``PerlTied``; v-strings -> ``PerlVString``.

No class is ever looked up or instantiated by name: class names are data.

Safety: any malformed input raises ``StorableError`` (a ``ValueError``):
truncation, trailing bytes, bad header, unknown opcodes, counts larger than the
remaining input (checked before anything is allocated), bad back-references,
nesting deeper than ``max_depth`` and inputs larger than ``max_size``.

Speed
-----
A Perl site's session is read on every request, so it has to be cheap: the
targets are a thaw at least 4x faster than PyPI ``storable`` and an nfreeze at
most 10x slower than Perl's own (``benchmarks/bench_storable.py``, an 8 KB
session frozen by Perl).  Two implementations give the same results:

* Python.  ``thaw`` reads a container's items in one loop that decodes the
  common opcodes itself and sends the rest to a table of handlers; the writer
  appends precomputed headers in one loop and caches encoded keys.  It went
  from 2.45x to 2.8x faster than PyPI storable, and nfreeze from 19.5x to 11x
  slower than Perl.  A hash entry then costs about 0.5 us of interpreter work
  that no arrangement of the loop removed, so 4x is out of reach this way
  (mypyc, tried on this module, gained 1.4x on thaw and 1.2x on nfreeze).
* An optional C accelerator, ``_storable_speedups.c``, built by ``setup.py``
  where a compiler is found.  It covers the plain part of the format (strings,
  numbers, undef, booleans, arrays, hashes, references to them) and returns
  NotImplemented for anything else, malformed input included; the Python code
  then does the whole job, so errors, limits and the rare Perl types stay in
  one place.  Measured: thaw 29-32x faster than PyPI storable (45 us, a little
  under Perl's own thaw), nfreeze as fast as Perl's.  That meets both targets
  with room, for about 1100 lines of C held to the Python code by the tests
  (the Perl corpus on both paths, hypothesis equivalence and fuzzing, run once
  under AddressSanitizer when it was written).  Without a compiler the install
  still succeeds and runs in Python.
"""

from __future__ import annotations

import importlib
import itertools
import math
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# The C accelerator (see "Speed" above), imported by name: import-linter cannot see
# inside a compiled module and would read "from . import" as importing the package.
try:
    _speedups: Any = importlib.import_module("pyramid_kvs._storable_speedups")
except ImportError:  # not built where it was installed: Python does everything
    _speedups = None

__all__ = [
    "PerlCode",
    "PerlHook",
    "PerlObject",
    "PerlRef",
    "PerlRegexp",
    "PerlTied",
    "PerlVString",
    "StorableError",
    "freeze",
    "nfreeze",
    "perl_number",
    "thaw",
]

TextMode = Literal["auto", "str", "bytes"]

#: Highest binary minor version understood (Storable 3.32 writes 2.12; the
#: Storable 3.26 of Perl 5.36 writes 2.11).
MAX_MINOR = 12
#: Minor version written by ``freeze``/``nfreeze``: 11, so that the
#: Storable 3.26 of Perl 5.36 accepts it (we never write the 2.12 booleans).
WRITE_MINOR = 11
DEFAULT_MAX_DEPTH = 256
DEFAULT_MAX_SIZE = 64 * 1024 * 1024

# Opcodes, checked against Storable.xs (Storable 3.26 for 0-33, 3.32 for 34-35).
SX_OBJECT = 0  # already retrieved object: <tag:u32 big-endian>
SX_LSCALAR = 1  # <len:u32> <bytes>
SX_ARRAY = 2  # <count:i32> <items>
SX_HASH = 3  # <count:i32> (<value> <klen:u32> <key>)*
SX_REF = 4  # <object>
SX_UNDEF = 5
SX_INTEGER = 6  # native IV
SX_DOUBLE = 7  # native NV
SX_BYTE = 8  # <value + 128>
SX_NETINT = 9  # <i32 big-endian>
SX_SCALAR = 10  # <len:u8> <bytes>
SX_TIED_ARRAY = 11
SX_TIED_HASH = 12
SX_TIED_SCALAR = 13
SX_SV_UNDEF = 14
SX_SV_YES = 15
SX_SV_NO = 16
SX_BLESS = 17  # <len:u8 | 0x80 <len:i32>> <classname> <object>
SX_IX_BLESS = 18  # <index:u8 | 0x80 <index:i32>> <object>
SX_HOOK = 19
SX_OVERLOAD = 20
SX_TIED_KEY = 21  # <object> <key object>
SX_TIED_IDX = 22  # <object> <index:i32>
SX_UTF8STR = 23
SX_LUTF8STR = 24
SX_FLAG_HASH = 25  # <hash flags:u8> <count:i32> (<value> <key flags:u8> <klen> <key>)*
SX_CODE = 26
SX_WEAKREF = 27
SX_WEAKOVERLOAD = 28
SX_VSTRING = 29
SX_LVSTRING = 30
SX_SVUNDEF_ELEM = 31
SX_REGEXP = 32
SX_LOBJECT = 33  # <type:u8> [<hash flags>] <len:u64> ...
SX_BOOLEAN_TRUE = 34
SX_BOOLEAN_FALSE = 35

# SX_HOOK flags
SHF_TYPE_MASK = 0x03
SHF_LARGE_CLASSLEN = 0x04
SHF_LARGE_STRLEN = 0x08
SHF_LARGE_LISTLEN = 0x10
SHF_IDX_CLASSNAME = 0x20
SHF_NEED_RECURSE = 0x40
SHF_HAS_LIST = 0x80
SHT_EXTRA = 3
# per key flags of SX_FLAG_HASH
SHV_K_UTF8 = 0x01
SHV_K_WASUTF8 = 0x02
SHV_K_ISSV = 0x08
SHV_K_PLACEHOLDER = 0x10

_BE_U32 = struct.Struct(">I")
_BE_I32 = struct.Struct(">i")
_BE_U64 = struct.Struct(">Q")
_HOOK_KINDS = {0: "scalar", 1: "array", 2: "hash", 4: "scalar", 5: "array", 6: "hash"}
_PENDING: Any = object()  # placeholder for a reference whose target is being read
_RV_OPCODES = frozenset((SX_REF, SX_OVERLOAD, SX_WEAKREF, SX_WEAKOVERLOAD))
_HIDDEN: Any = object()  # the key of a restricted hash's placeholder, which is skipped
_PLAIN_CONTAINERS = (SX_HASH, SX_ARRAY)
#: the fewest bytes an item takes in each kind of container: an opcode, and for a
#: hash entry a 4-byte key length, and a flag byte in a flagged hash
_MIN_ITEM_SIZE = {SX_ARRAY: 1, SX_HASH: 5, SX_FLAG_HASH: 6}


class StorableError(ValueError):
    """Raised for any malformed, unsupported or over-limit Storable data."""


@dataclass(eq=True)
class PerlObject:
    """A blessed Perl value: ``class_name`` is kept as data, never resolved.

    ``value`` is the blessed thing: a ``dict``/``list`` for hash/array based
    objects, a scalar for ``bless \\$x``, a ``PerlRef`` for a blessed
    reference (``bless \\[]``), or a ``PerlHook``.
    """

    class_name: str
    value: Any


@dataclass(eq=True)
class PerlRef:
    """A Perl reference to a scalar (or to another reference)."""

    value: Any


@dataclass(eq=True)
class PerlHook:
    """Data an object's ``STORABLE_freeze`` hook returned, for ``STORABLE_thaw``.

    ``frozen`` is the serialized string, ``refs`` the extra referenced values,
    ``kind`` the Perl type of the object (``"hash"``, ``"array"``,
    ``"scalar"``) and ``tied`` the tie object when the object was tied.
    """

    kind: str
    frozen: str | bytes
    refs: list[Any] = field(default_factory=list)
    tied: Any = None


@dataclass(eq=True)
class PerlTied:
    """A tied variable (``kind`` hash/array/scalar) or tied element (key/idx).

    ``object`` is the tie object (usually a ``PerlObject``); ``key`` is the
    hash key or array index of a tied element.  Nothing is re-tied.
    """

    kind: str
    object: Any
    key: Any = None


@dataclass(eq=True)
class PerlVString:
    """A v-string: ``value`` is the string, ``literal`` the source text (``v1.2.3``)."""

    value: Any
    literal: str


@dataclass(eq=True)
class PerlRegexp:
    """A ``qr//`` regexp, kept as Perl source text (never compiled)."""

    pattern: str
    flags: str


@dataclass(eq=True)
class PerlCode:
    """Deparsed Perl code (``$Storable::Deparse``): text only, never evaluated."""

    source: str


# ---------------------------------------------------------------------------
# Numeric strings


_INT_RE = re.compile(r"-?[1-9][0-9]*|0")
#: longer than any canonical number: %.15g text with a sign and a three-digit
#: exponent has at most 22 characters, a 64-bit integer at most 20
_MAX_NUMBER_CHARS = 24
_NUM_CHARS_RE = re.compile(r"-?[0-9][0-9.]*(e[-+][0-9]+)?")


def perl_number(text: str) -> int | float | str:
    """Return the number Perl stringified as ``text``, or ``text`` unchanged.

    A string is *canonical* when Perl itself prints exactly that text for some
    number, so converting it loses nothing: integers are ``0`` or an optional
    ``-`` and digits without a leading zero, within Perl's IV/UV range
    (``-2**63 .. 2**64-1``); floats are what Perl's ``%.15g`` formatting
    produces (``1.5``, ``0.1``, ``1e+20``, ``1e-05``).  ``"0123"``, ``"1.50"``,
    ``"1e5"``, ``"+1"``, ``" 1"``, ``"-0"``, ``"inf"`` and ``"nan"`` stay strings.

    No canonical number is longer than 24 characters, so longer text stays text
    before any conversion is tried: the text comes from untrusted data, and Python
    refuses (or, without its digit limit, takes quadratic time) to read thousands
    of digits.
    """
    if len(text) > _MAX_NUMBER_CHARS:
        return text
    if _INT_RE.fullmatch(text):
        n = int(text)
        if -(2**63) <= n < 2**64:
            return n
        return text
    if not _NUM_CHARS_RE.fullmatch(text):
        return text
    try:
        x = float(text)
    except ValueError:
        return text
    if math.isfinite(x) and x != 0.0 and f"{x:.15g}" == text:
        return x
    return text


# ---------------------------------------------------------------------------
# Reader


def _truncated() -> StorableError:
    return StorableError("truncated Storable data")


class _Reader:
    """One decoding pass: input bytes, a cursor and the tables of seen values."""

    def __init__(
        self, data: bytes, text: TextMode, numeric: bool, max_depth: int, inline: bool = True
    ) -> None:
        self.data = data
        self.end = len(data)
        self.pos = 0
        self.text = text
        self.numeric = numeric
        self.max_depth = max_depth
        self.depth = 0
        self.seen: list[Any] = []
        self.classes: list[str] = []
        self.rv_tags: set[int] = set()
        self.boxes: dict[int, PerlRef] = {}
        self.key_cache: dict[bytes, str | bytes] = {}
        self.netorder = False
        self.minor = 0
        self.fast = text == "auto" and not numeric  # may inline plain string decoding
        self.ops = _OPS
        self.inline = inline
        # the loop that reads containers: inlined once the header is read (see run),
        # or the plain reading that the inlined loop is tested against
        self.fill: Callable[[int, int, str | None], Any] = self._fill_by_table
        self.iv = self.nv = _BE_U64.unpack_from  # replaced by read_header in native order
        self.ivsize = 0

    # -- header ---------------------------------------------------------

    def read_header(self) -> None:
        data = self.data
        if data[:4] == b"pst0":
            self.pos = 4
        elif data[:10] == b"perl-store":
            raise StorableError("pre-0.6 Storable format is not supported")
        if self.pos + 2 > self.end:
            raise StorableError("Storable header is truncated")
        flag = data[self.pos]
        major = flag >> 1
        if major != 2:
            raise StorableError(f"unsupported Storable binary major version {major}")
        self.netorder = bool(flag & 1)
        self.minor = minor = data[self.pos + 1]
        self.pos += 2
        if minor > MAX_MINOR:
            raise StorableError(f"unsupported Storable binary version 2.{minor}")
        # Struct.unpack_from is typed as returning tuple[Any, ...]: these return ints.
        self.rlen: Callable[[bytes, int], tuple[int]]
        self.rlen_u: Callable[[bytes, int], tuple[int]]
        self.u64: Callable[[bytes, int], tuple[int]]
        if self.netorder:
            self.rlen = _BE_I32.unpack_from
            self.rlen_u = _BE_U32.unpack_from
            self.ivsize = 0
            self.u64 = _BE_U64.unpack_from
            return
        if self.pos >= self.end:
            raise StorableError("Storable header is truncated")
        n = data[self.pos]
        self.pos += 1
        extra = 4 if minor >= 2 else 3
        if self.pos + n + extra > self.end:
            raise StorableError("Storable header is truncated")
        order = data[self.pos : self.pos + n]
        self.pos += n
        sizes = data[self.pos : self.pos + extra]
        self.pos += extra
        if order in (b"1234", b"12345678"):
            endian = "<"
        elif order in (b"4321", b"87654321"):
            endian = ">"
        else:
            raise StorableError(f"unsupported byte order {order!r}")
        int_size, _long_size, _ptr_size = sizes[0], sizes[1], sizes[2]
        nv_size = sizes[3] if extra == 4 else 8
        if int_size != 4:
            raise StorableError(f"unsupported sizeof(int) {int_size}")
        if nv_size != 8:
            raise StorableError(f"unsupported NV size {nv_size} (only 8-byte doubles)")
        self.ivsize = n
        self.rlen = struct.Struct(endian + "i").unpack_from
        self.rlen_u = struct.Struct(endian + "I").unpack_from
        self.u64 = struct.Struct(endian + "Q").unpack_from
        self.iv = struct.Struct(endian + ("q" if n == 8 else "i")).unpack_from
        self.nv = struct.Struct(endian + "d").unpack_from

    # -- primitives -----------------------------------------------------

    def _byte(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise _truncated()
        self.pos = pos + 1
        return self.data[pos]

    def _i32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise _truncated()
        self.pos = pos + 4
        return self.rlen(self.data, pos)[0]

    def _u32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise _truncated()
        self.pos = pos + 4
        return self.rlen_u(self.data, pos)[0]

    def _u64(self) -> int:
        pos = self.pos
        if pos + 8 > self.end:
            raise _truncated()
        self.pos = pos + 8
        return self.u64(self.data, pos)[0]

    def _raw(self, n: int) -> bytes:
        pos = self.pos
        end = pos + n
        if end > self.end:
            raise StorableError(f"length {n} exceeds the remaining input")
        self.pos = end
        return self.data[pos:end]

    def _text(self, raw: bytes) -> str | bytes:
        """Decode an unflagged Perl string according to the ``text`` mode."""
        mode = self.text
        if mode == "bytes":
            return raw
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return raw if mode == "auto" else raw.decode("latin-1")

    @staticmethod
    def _utf8(raw: bytes) -> str:
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise StorableError("malformed UTF-8 in a UTF-8 flagged string") from exc

    @staticmethod
    def _name(raw: bytes) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise StorableError(f"nesting deeper than max_depth={self.max_depth}")

    def retrieve(self, cname: str | None = None) -> Any:
        pos = self.pos
        if pos >= self.end:
            raise _truncated()
        self.pos = pos + 1
        return self.ops[self.data[pos]](self, cname)

    def _register(self, value: Any, cname: str | None) -> Any:
        if cname is not None:
            value = PerlObject(cname, value)
        self.seen.append(value)
        return value

    # -- scalars --------------------------------------------------------

    def _bad_op(self, cname: str | None) -> Any:
        raise StorableError(f"unknown Storable opcode {self.data[self.pos - 1]}")

    def _op_object(self, cname: str | None) -> Any:
        pos = self.pos
        if pos + 4 > self.end:
            raise _truncated()
        self.pos = pos + 4
        return self._backref(_BE_U32.unpack_from(self.data, pos)[0])

    def _finish_string(self, raw: bytes, cname: str | None) -> Any:
        value: Any = self._text(raw)
        if self.numeric and type(value) is str:
            value = perl_number(value)
        if cname is not None:
            value = PerlObject(cname, value)
        self.seen.append(value)
        return value

    def _op_scalar(self, cname: str | None) -> Any:
        data = self.data
        pos = self.pos
        if pos >= self.end:
            raise _truncated()
        start = pos + 1
        end = start + data[pos]
        if end > self.end:
            raise _truncated()
        self.pos = end
        raw = data[start:end]
        if self.text == "auto" and not self.numeric and cname is None:
            try:
                value: Any = raw.decode()
            except UnicodeDecodeError:
                value = raw
            self.seen.append(value)
            return value
        return self._finish_string(raw, cname)

    def _op_lscalar(self, cname: str | None) -> Any:
        return self._finish_string(self._raw(self._u32()), cname)

    def _op_utf8str(self, cname: str | None) -> Any:
        return self._register(self._utf8(self._raw(self._byte())), cname)

    def _op_lutf8str(self, cname: str | None) -> Any:
        return self._register(self._utf8(self._raw(self._u32())), cname)

    def _op_byte(self, cname: str | None) -> Any:
        pos = self.pos
        if pos >= self.end:
            raise _truncated()
        self.pos = pos + 1
        value = self.data[pos] - 128
        if cname is not None:
            return self._register(value, cname)
        self.seen.append(value)
        return value

    def _op_netint(self, cname: str | None) -> Any:
        pos = self.pos
        if pos + 4 > self.end:
            raise _truncated()
        self.pos = pos + 4
        return self._register(_BE_I32.unpack_from(self.data, pos)[0], cname)

    def _op_integer(self, cname: str | None) -> Any:
        if self.netorder:
            raise StorableError("native integer in network-order data")
        pos = self.pos
        if pos + self.ivsize > self.end:
            raise _truncated()
        self.pos = pos + self.ivsize
        return self._register(self.iv(self.data, pos)[0], cname)

    def _op_double(self, cname: str | None) -> Any:
        if self.netorder:
            raise StorableError("native double in network-order data")
        pos = self.pos
        if pos + 8 > self.end:
            raise _truncated()
        self.pos = pos + 8
        return self._register(self.nv(self.data, pos)[0], cname)

    def _op_undef(self, cname: str | None) -> Any:
        return self._register(None, cname)

    def _op_yes(self, cname: str | None) -> Any:
        return self._register(True, cname)

    def _op_no(self, cname: str | None) -> Any:
        return self._register(False, cname)

    def _op_vstring(self, cname: str | None) -> Any:
        return self._vstring(self._raw(self._byte()), cname)

    def _op_lvstring(self, cname: str | None) -> Any:
        return self._vstring(self._raw(self._u32()), cname)

    def _vstring(self, literal: bytes, cname: str | None) -> Any:
        tag = len(self.seen)
        self._enter()
        inner = self.retrieve(cname)
        self.depth -= 1
        if tag >= len(self.seen):
            raise StorableError("v-string magic without a string")
        if type(inner) is PerlObject:
            inner.value = PerlVString(inner.value, self._name(literal))
            return inner
        value = PerlVString(inner, self._name(literal))
        self.seen[tag] = value
        return value

    def _op_regexp(self, cname: str | None) -> Any:
        op_flags = self._byte()
        n = self._u32() if op_flags & 0x01 else self._byte()
        pattern = self._raw(n)
        flags = self._name(self._raw(self._byte()))
        # Storable writes the pattern's bytes without its UTF-8 flag (and Perl
        # 5.36 recompiles them as Latin-1, garbling non-ASCII patterns); give
        # the text that was meant: UTF-8 when valid, else Latin-1.
        text = self._name(pattern)
        value: Any = PerlRegexp(text, flags)
        if cname is not None and cname != "Regexp":
            value = PerlObject(cname, value)
        self.seen.append(value)
        return value

    def _op_code(self, cname: str | None) -> Any:
        tag = len(self.seen)
        self.seen.append(None)
        op = self._byte()
        if op == SX_SCALAR:
            source = self._name(self._raw(self._byte()))
        elif op == SX_LSCALAR:
            source = self._name(self._raw(self._u32()))
        elif op == SX_UTF8STR:
            source = self._utf8(self._raw(self._byte()))
        elif op == SX_LUTF8STR:
            source = self._utf8(self._raw(self._u32()))
        else:
            raise StorableError(f"unexpected opcode {op} in code")
        self.seen.append(source)
        value: Any = PerlCode(source)
        if cname is not None:
            value = PerlObject(cname, value)
        self.seen[tag] = value
        return value

    # -- containers -----------------------------------------------------

    def _op_array(self, cname: str | None) -> Any:
        return self.fill(SX_ARRAY, self._i32(), cname)

    def _op_hash(self, cname: str | None) -> Any:
        return self.fill(SX_HASH, self._i32(), cname)

    def _op_flag_hash(self, cname: str | None) -> Any:
        self._byte()  # hash flags: only "restricted", which Python has no use for
        return self.fill(SX_FLAG_HASH, self._i32(), cname)

    def _open(self, kind: int, n: int, cname: str | None) -> tuple[Any, Any]:
        """Check a container's item count, allocate the container and tag it.

        Returns the container and the value that stands for it (a ``PerlObject``
        when blessed).  The count is checked against the remaining input first:
        a forged count cannot make us allocate more than the input could fill.
        """
        if n < 0 or n * _MIN_ITEM_SIZE[kind] > self.end - self.pos:
            raise StorableError(f"count {n} exceeds the remaining input")
        items: Any = [None] * n if kind == SX_ARRAY else {}
        result = items if cname is None else PerlObject(cname, items)
        self.seen.append(result)
        return items, result

    def _hash_key(self, kind: int) -> Any:
        """Read the key that follows a hash value (``_HIDDEN`` for a placeholder)."""
        kflags = self._byte() if kind == SX_FLAG_HASH else 0
        if kflags & SHV_K_ISSV:
            key = self.retrieve()
            try:
                hash(key)
            except TypeError:
                raise StorableError("unhashable hash key object") from None
            return key
        raw = self._raw(self._u32())
        if kflags & SHV_K_PLACEHOLDER:  # a restricted hash's hidden key: Perl hides it too
            return _HIDDEN
        if kflags & SHV_K_UTF8:
            return self._utf8(raw)
        if kflags & SHV_K_WASUTF8:
            return raw.decode("latin-1")
        key = self.key_cache.get(raw)
        if key is None:
            key = self.key_cache[raw] = self._text(raw)
        return key

    def _fill_by_table(self, kind: int, n: int, cname: str | None) -> Any:
        """Read a container's ``n`` items one handler call per opcode.

        The plain reading of the format, kept as the reference that the inlined
        loop (what ``thaw`` uses) is tested against, value for value.
        """
        items, result = self._open(kind, n, cname)
        if n:
            self._enter()
            for i in range(n):
                value = self.retrieve()
                if kind == SX_ARRAY:
                    items[i] = value
                    continue
                key = self._hash_key(kind)
                if key is not _HIDDEN:
                    items[key] = value
            self.depth -= 1
        return result

    def _inlined_fill(self) -> Callable[[int, int, str | None], Any]:
        """Build the loop that reads a container's items, where thawing spends its time.

        The opcodes most of a session is made of (short and UTF-8 strings, small
        and native integers, doubles, undef, references to hashes and arrays) and
        plain hash keys are decoded in the loop itself; any other opcode goes to
        its handler.  It reads exactly as ``_fill_by_table`` does, which the tests
        hold it to.  It is a closure, built once the header is read, so that what
        it needs is bound once per ``thaw`` rather than at every container.

        Reading past the end raises IndexError or struct.error (``thaw`` reports
        truncation).  A slice past the end does not, but it leaves ``pos`` past
        the end, where the next read raises; the end of each container checks it.
        """
        data = self.data
        limit = self.end
        max_depth = self.max_depth
        seen = self.seen
        seen_append = seen.append
        rv_tags_add = self.rv_tags.add
        plain_text = self.fast
        native = not self.netorder
        iv, ivsize, nv = self.iv, self.ivsize, self.nv
        netint = _BE_I32.unpack_from
        count = self.rlen
        key_length = self.rlen_u
        keys_get = self.key_cache.get
        key_cache = self.key_cache
        text = self._text
        utf8 = self._utf8
        ops = self.ops
        hash_key = self._hash_key
        open_container = self._open
        reader = self

        def fill(kind: int, n: int, cname: str | None) -> Any:
            items, result = open_container(kind, n, cname)
            if not n:
                return result
            depth = reader.depth + 1
            if depth > max_depth:
                raise StorableError(f"nesting deeper than max_depth={max_depth}")
            reader.depth = depth
            plain_keys = kind == SX_HASH
            array = kind == SX_ARRAY
            pos = reader.pos
            for i in range(n):
                op = data[pos]
                if op == SX_SCALAR and plain_text:
                    start = pos + 2
                    pos = start + data[pos + 1]
                    raw = data[start:pos]
                    try:
                        value: Any = raw.decode()
                    except UnicodeDecodeError:
                        value = raw
                    seen_append(value)
                elif op == SX_BYTE:
                    value = data[pos + 1] - 128
                    pos += 2
                    seen_append(value)
                elif op == SX_REF and data[pos + 1] in _PLAIN_CONTAINERS:
                    # a reference to a hash or an array: the container stands for it
                    if depth >= max_depth:
                        raise StorableError(f"nesting deeper than max_depth={max_depth}")
                    tag = len(seen)
                    seen_append(_PENDING)
                    reader.pos = pos + 6
                    reader.depth = depth + 1
                    value = fill(data[pos + 1], count(data, pos + 2)[0], None)
                    reader.depth = depth
                    pos = reader.pos
                    early = seen[tag]
                    if early is not _PENDING:  # a cycle handed out a box for this reference
                        early.value = value
                    seen[tag] = value
                    rv_tags_add(tag)
                elif op == SX_NETINT:
                    value = netint(data, pos + 1)[0]
                    pos += 5
                    seen_append(value)
                elif op == SX_UTF8STR:
                    start = pos + 2
                    pos = start + data[pos + 1]
                    if pos > limit:
                        raise _truncated()
                    value = utf8(data[start:pos])
                    seen_append(value)
                elif op == SX_INTEGER and native:
                    value = iv(data, pos + 1)[0]
                    pos += 1 + ivsize
                    seen_append(value)
                elif op == SX_DOUBLE and native:
                    value = nv(data, pos + 1)[0]
                    pos += 9
                    seen_append(value)
                elif op in (SX_UNDEF, SX_SV_UNDEF):
                    value = None
                    pos += 1
                    seen_append(None)
                else:
                    reader.pos = pos + 1
                    value = ops[op](reader, None)
                    pos = reader.pos
                if plain_keys:
                    start = pos + 4
                    pos = start + key_length(data, pos)[0]
                    raw = data[start:pos]
                    key = keys_get(raw)
                    if key is None:
                        key = key_cache[raw] = text(raw)
                    items[key] = value
                elif array:
                    items[i] = value
                else:
                    reader.pos = pos
                    key = hash_key(kind)
                    pos = reader.pos
                    if key is not _HIDDEN:
                        items[key] = value
            if pos > limit:
                raise _truncated()
            reader.pos = pos
            reader.depth = depth - 1
            return result

        return fill

    def _op_ref(self, cname: str | None) -> Any:
        seen = self.seen
        tag = len(seen)
        obj = None
        if cname is None:
            # the reference's value is only known once its target is read;
            # a back-reference to it meanwhile gets a box (see _backref)
            seen.append(_PENDING)
        else:
            obj = PerlObject(cname, None)
            seen.append(obj)
        data = self.data
        pos = self.pos
        if pos >= self.end:
            raise _truncated()
        op = data[pos]
        if op == SX_OBJECT:
            if pos + 5 > self.end:
                raise _truncated()
            rtag = _BE_U32.unpack_from(data, pos + 1)[0]
            target_is_rv = rtag in self.rv_tags
        elif op == SX_LOBJECT and pos + 10 <= self.end and data[pos + 1] == SX_OBJECT:
            rtag = self.u64(data, pos + 2)[0]
            target_is_rv = rtag in self.rv_tags
        else:
            rtag = tag + 1
            target_is_rv = op in _RV_OPCODES
        self.depth += 1
        if self.depth > self.max_depth:
            raise StorableError(f"nesting deeper than max_depth={self.max_depth}")
        target = self.retrieve()
        self.depth -= 1
        if obj is not None:  # a blessed reference: keep the reference level
            obj.value = PerlRef(target)
            return obj
        early = seen[tag]
        ttype = type(target)
        if early is _PENDING:
            if not target_is_rv and (ttype is dict or ttype is list or ttype is PerlObject):
                value: Any = target  # fast path for the common case
            else:
                value = self._reference(rtag, target, target_is_rv)
        else:  # a cycle through this very reference: keep the box handed out
            early.value = target
            value = self._reference(rtag, target, target_is_rv, early)
        seen[tag] = value
        self.rv_tags.add(tag)
        return value

    def _backref(self, tag: int) -> Any:
        """The value of tag ``tag`` for a back-reference."""
        seen = self.seen
        if tag >= len(seen):
            raise StorableError(f"back-reference to unknown object #{tag}")
        value = seen[tag]
        if value is _PENDING:
            value = seen[tag] = PerlRef(None)
        return value

    def _reference(
        self, rtag: int, target: Any, target_is_rv: bool, box: PerlRef | None = None
    ) -> Any:
        """The Python value of a reference to the SV tagged ``rtag``.

        Containers (and blessed, code, regexp and tied-container values) stand
        for their own reference; anything else is boxed in a ``PerlRef``,
        one box per referenced SV so that shared scalars stay shared.
        """
        ttype = type(target)
        if not target_is_rv and (
            ttype is dict
            or ttype is list
            or ttype is PerlObject
            or ttype is PerlCode
            or ttype is PerlRegexp
            or (ttype is PerlTied and target.kind in ("hash", "array"))
        ):
            return target
        shared = self.boxes.get(rtag)
        if shared is not None and shared.value is target:
            return shared
        if box is None:
            box = PerlRef(target)
        else:
            box.value = target
        self.boxes[rtag] = box
        return box

    def _op_bless(self, cname: str | None) -> Any:
        n = self._byte()
        if n & 0x80:
            n = self._i32()
            if n < 0:
                raise StorableError("negative class name length")
        name = self._name(self._raw(n))
        self.classes.append(name)
        self._enter()
        value = self.retrieve(name)
        self.depth -= 1
        return value

    def _op_ix_bless(self, cname: str | None) -> Any:
        idx = self._byte()
        if idx & 0x80:
            idx = self._i32()
        if not 0 <= idx < len(self.classes):
            raise StorableError(f"unknown class name index {idx}")
        self._enter()
        value = self.retrieve(self.classes[idx])
        self.depth -= 1
        return value

    def _tied(self, kind: str, cname: str | None) -> PerlTied | PerlObject:
        tied = PerlTied(kind, None)
        result: PerlTied | PerlObject = self._register(tied, cname)
        self._enter()
        tied.object = self.retrieve()
        if kind == "key":
            tied.key = self.retrieve()
        elif kind == "idx":
            tied.key = self._i32()
        self.depth -= 1
        return result

    def _op_tied_array(self, cname: str | None) -> Any:
        return self._tied("array", cname)

    def _op_tied_hash(self, cname: str | None) -> Any:
        return self._tied("hash", cname)

    def _op_tied_scalar(self, cname: str | None) -> Any:
        return self._tied("scalar", cname)

    def _op_tied_key(self, cname: str | None) -> Any:
        return self._tied("key", cname)

    def _op_tied_idx(self, cname: str | None) -> Any:
        return self._tied("idx", cname)

    def _op_hook(self, cname: str | None, large: bool = False) -> Any:
        flags = self._byte()
        kind_code = flags & SHF_TYPE_MASK
        extra = 0
        if kind_code == SHT_EXTRA:
            extra = self._byte()
            if extra not in (4, 5, 6):
                raise StorableError(f"bad hook extra type {extra}")
            kind_code = extra
        hook = PerlHook(_HOOK_KINDS[kind_code], b"")
        obj = PerlObject("", hook)
        self.seen.append(obj)
        self._enter()
        while flags & SHF_NEED_RECURSE:
            self.retrieve()
            flags = self._byte()
        if flags & SHF_IDX_CLASSNAME:
            idx = self._i32() if flags & SHF_LARGE_CLASSLEN else self._byte()
            if not 0 <= idx < len(self.classes):
                raise StorableError(f"unknown class name index {idx}")
            obj.class_name = self.classes[idx]
        else:
            n = self._i32() if flags & SHF_LARGE_CLASSLEN else self._byte()
            if n < 0:
                raise StorableError("negative class name length")
            obj.class_name = self._name(self._raw(n))
            self.classes.append(obj.class_name)
        if large:
            n = self._u64()
        elif flags & SHF_LARGE_STRLEN:
            n = self._u32()
        else:
            n = self._byte()
        hook.frozen = self._text(self._raw(n))
        if flags & SHF_HAS_LIST:
            count = self._i32() if flags & SHF_LARGE_LISTLEN else self._byte()
            wide = count < 0
            if wide:
                count = -count
            width = 8 if wide else 4
            if count * width > self.end - self.pos:
                raise StorableError(f"count {count} exceeds the remaining input")
            for _ in range(count):
                tag = self._u64() if wide else _BE_U32.unpack_from(self._raw(4))[0]
                target = self._backref(tag)
                hook.refs.append(self._reference(tag, target, tag in self.rv_tags))
        if extra:
            hook.tied = self.retrieve()
        self.depth -= 1
        return obj

    def _op_lobject(self, cname: str | None) -> Any:
        kind = self._byte()
        if kind == SX_HOOK:
            return self._op_hook(cname, large=True)
        if kind == SX_FLAG_HASH:
            # Perl's store_lhash writes per-key flags but its get_lhash reader
            # skips them; we follow the writer, the only producer of this data.
            self._byte()
        n = self._u64()
        if kind == SX_OBJECT:
            return self._backref(n)
        if kind == SX_LSCALAR:
            return self._finish_string(self._raw(n), cname)
        if kind == SX_LUTF8STR:
            return self._register(self._utf8(self._raw(n)), cname)
        if kind in _MIN_ITEM_SIZE:
            return self.fill(kind, n, cname)
        raise StorableError(f"unexpected type {kind} in large object")

    def run(self) -> Any:
        self.read_header()
        if self.inline:
            self.fill = self._inlined_fill()
        value = self.retrieve()
        if self.pos != self.end:
            raise StorableError(f"{self.end - self.pos} trailing bytes after Storable data")
        return value


_HANDLERS: dict[int, str] = {
    SX_OBJECT: "_op_object",
    SX_LSCALAR: "_op_lscalar",
    SX_ARRAY: "_op_array",
    SX_HASH: "_op_hash",
    SX_REF: "_op_ref",
    SX_UNDEF: "_op_undef",
    SX_INTEGER: "_op_integer",
    SX_DOUBLE: "_op_double",
    SX_BYTE: "_op_byte",
    SX_NETINT: "_op_netint",
    SX_SCALAR: "_op_scalar",
    SX_TIED_ARRAY: "_op_tied_array",
    SX_TIED_HASH: "_op_tied_hash",
    SX_TIED_SCALAR: "_op_tied_scalar",
    SX_SV_UNDEF: "_op_undef",
    SX_SV_YES: "_op_yes",
    SX_SV_NO: "_op_no",
    SX_BLESS: "_op_bless",
    SX_IX_BLESS: "_op_ix_bless",
    SX_HOOK: "_op_hook",
    SX_OVERLOAD: "_op_ref",
    SX_TIED_KEY: "_op_tied_key",
    SX_TIED_IDX: "_op_tied_idx",
    SX_UTF8STR: "_op_utf8str",
    SX_LUTF8STR: "_op_lutf8str",
    SX_FLAG_HASH: "_op_flag_hash",
    SX_CODE: "_op_code",
    SX_WEAKREF: "_op_ref",
    SX_WEAKOVERLOAD: "_op_ref",
    SX_VSTRING: "_op_vstring",
    SX_LVSTRING: "_op_lvstring",
    SX_SVUNDEF_ELEM: "_op_undef",
    SX_REGEXP: "_op_regexp",
    SX_LOBJECT: "_op_lobject",
    SX_BOOLEAN_TRUE: "_op_yes",
    SX_BOOLEAN_FALSE: "_op_no",
}


#: the handler of every opcode, indexed by opcode
_OPS: tuple[Callable[[_Reader, str | None], Any], ...] = tuple(
    getattr(_Reader, _HANDLERS.get(code, "_bad_op")) for code in range(256)
)


def thaw(
    data: bytes | bytearray | memoryview,
    *,
    text: TextMode = "auto",
    numeric_strings: bool = False,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_size: int | None = DEFAULT_MAX_SIZE,
) -> Any:
    """Decode Storable ``freeze``/``nfreeze`` output or a ``store``/``nstore`` file.

    ``text`` chooses how strings without Perl's UTF-8 flag are returned
    (``"auto"``: ``str`` if valid UTF-8 else ``bytes``; ``"str"``: always
    ``str``, Latin-1 when not UTF-8; ``"bytes"``: always ``bytes``).
    ``numeric_strings=True`` turns canonical decimal strings into numbers (see
    ``perl_number``).  ``max_depth`` bounds nesting and ``max_size`` the
    input length (``None`` for no size limit).  Raises ``StorableError``
    and nothing else for bad input.
    """
    if text not in ("auto", "str", "bytes"):
        raise ValueError(f"text must be 'auto', 'str' or 'bytes', not {text!r}")
    if not isinstance(data, bytes):
        if not isinstance(data, bytearray | memoryview):
            raise TypeError(f"thaw() needs bytes, not {type(data).__name__}")
        data = bytes(data)
    if max_size is not None and len(data) > max_size:
        raise StorableError(f"Storable data of {len(data)} bytes exceeds max_size={max_size}")
    if _speedups is not None and text == "auto" and not numeric_strings:
        value = _speedups.thaw(data, max_depth)
        if value is not NotImplemented:
            return value
    return _read(data, text, numeric_strings, max_depth)


def _read(
    data: bytes, text: TextMode, numeric: bool, max_depth: int, *, inline: bool = True
) -> Any:
    """Decode ``data`` in Python, reporting every failure as ``StorableError``.

    ``inline=False`` reads every value through the opcode handlers: the tests
    compare it with the inlined loop that ``thaw`` uses.
    """
    reader = _Reader(data, text, numeric, max_depth, inline)
    try:
        return reader.run()
    except StorableError:
        raise
    except (IndexError, struct.error) as exc:
        raise StorableError("truncated Storable data") from exc
    except RecursionError as exc:
        raise StorableError("Storable data nested too deeply for the Python stack") from exc
    except MemoryError as exc:
        raise StorableError("Storable data too large to decode") from exc


# ---------------------------------------------------------------------------
# Writer

_NATIVE_HEADER = b"\x04" + bytes([WRITE_MINOR]) + b"\x0812345678\x04\x08\x08\x08"
_NET_HEADER = b"\x05" + bytes([WRITE_MINOR])
_LE_I32 = struct.Struct("<i")
# Precomputed opcodes with their operands: the writer's loop appends these whole.
_SCALAR_HEADERS = tuple(bytes((SX_SCALAR, n)) for n in range(256))
_UTF8STR_HEADERS = tuple(bytes((SX_UTF8STR, n)) for n in range(256))
_SMALL_INTS = tuple(bytes((SX_BYTE, n)) for n in range(256))  # index: value + 128
_OP_REF = bytes((SX_REF,))
_OP_UNDEF = bytes((SX_UNDEF,))
_OP_OBJECT = bytes((SX_OBJECT,))
_NETINT = struct.Struct(">Bi").pack
_NATIVE_INTEGER = struct.Struct("<Bq").pack
_NATIVE_DOUBLE = struct.Struct("<Bd").pack
_NO_KEY = itertools.repeat(b"")


class _Writer:
    """Serializes plain Python data the way Perl's Storable stores the same values.

    The output is a list of byte strings joined at the end; every SV written
    takes the next tag, as in Perl, so that back-references can name it.
    """

    def __init__(self, netorder: bool, max_depth: int) -> None:
        self.netorder = netorder
        self.parts: list[bytes] = [_NET_HEADER if netorder else _NATIVE_HEADER]
        self.i32 = _BE_I32.pack if netorder else _LE_I32.pack
        self.tag = 0
        self.tags: dict[int, int] = {}
        self.keep: list[Any] = []
        self.classes: dict[str, int] = {}
        self.max_depth = max_depth
        self.depth = 0
        #: ASCII ``str`` keys already written, with their length and bytes as
        #: SX_HASH writes them: a session repeats the same few keys
        self.plain_keys: dict[str, bytes] = {}

    def _header(self, op: int, n: int) -> bytes:
        """An opcode with a 4-byte length (or index) in the writer's byte order."""
        if n > 0x7FFFFFFF:
            raise StorableError("strings over 2 GiB are not supported")
        return bytes((op,)) + self.i32(n)

    def _len_prefixed(self, raw: bytes, small: int, large: int) -> None:
        n = len(raw)
        self.parts.append(bytes((small, n)) if n <= 255 else self._header(large, n))
        self.parts.append(raw)

    def _string(self, value: str) -> None:
        if value.isascii():
            self._len_prefixed(value.encode("ascii"), SX_SCALAR, SX_LSCALAR)
        else:
            self._len_prefixed(value.encode("utf-8", "surrogatepass"), SX_UTF8STR, SX_LUTF8STR)

    def _number_string(self, value: int | float) -> None:
        self._len_prefixed(_perl_str_number(value).encode("ascii"), SX_SCALAR, SX_LSCALAR)

    def _key(self, key: Any) -> tuple[int, bytes]:
        if type(key) is str or isinstance(key, str):
            if key.isascii():
                return 0, key.encode("ascii")
            return SHV_K_UTF8, key.encode("utf-8", "surrogatepass")
        if isinstance(key, bytes | bytearray):
            return 0, bytes(key)
        if isinstance(key, bool) or key is None:
            raise TypeError(f"unsupported hash key {key!r}")
        if isinstance(key, int | float):
            return 0, _perl_str_number(key).encode("ascii")
        raise TypeError(f"unsupported hash key type {type(key).__name__}")

    def write(self, obj: Any) -> None:
        """Write one SV (every call consumes one tag, as in Perl)."""
        parts = self.parts
        if obj is None:
            self.tag += 1
            parts.append(_OP_UNDEF)
        elif obj is True or obj is False:
            self.tag += 1
            parts.append(bytes((SX_SV_YES if obj else SX_SV_NO,)))
        elif isinstance(obj, str):
            self.tag += 1
            self._string(obj)
        elif isinstance(obj, int):
            self.tag += 1
            if -128 <= obj <= 127:
                parts.append(_SMALL_INTS[obj + 128])
            elif self.netorder and -(2**31) <= obj < 2**31:
                parts.append(_NETINT(SX_NETINT, obj))
            elif not self.netorder and -(2**63) <= obj < 2**63:
                parts.append(_NATIVE_INTEGER(SX_INTEGER, obj))
            else:
                self._number_string(obj)
        elif isinstance(obj, float):
            self.tag += 1
            if self.netorder:
                self._number_string(obj)
            else:
                parts.append(_NATIVE_DOUBLE(SX_DOUBLE, obj))
        elif isinstance(obj, bytes | bytearray | memoryview):
            self.tag += 1
            self._len_prefixed(bytes(obj), SX_SCALAR, SX_LSCALAR)
        elif isinstance(obj, dict | list | tuple | PerlObject | PerlRef):
            self._container(obj)
        else:
            raise TypeError(f"cannot freeze objects of type {type(obj).__name__}")

    def _seen(self, obj: Any) -> bool:
        """Emit a back-reference if ``obj`` was already written; else give it a tag."""
        tag = self.tags.get(id(obj))
        if tag is not None:
            self.parts.append(_OP_OBJECT + _BE_U32.pack(tag))
            return True
        self.tags[id(obj)] = self.tag
        self.keep.append(obj)
        self.tag += 1
        return False

    def _value(self, obj: Any) -> None:
        """Write ``obj`` as a hash value or array element: containers go behind a ref."""
        if isinstance(obj, dict | list | tuple | PerlObject):
            self.tag += 1  # the RV
            self.parts.append(_OP_REF)
        self.write(obj)

    def _container(self, obj: Any) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise StorableError(f"data nested deeper than max_depth={self.max_depth}")
        parts = self.parts
        if isinstance(obj, PerlObject):
            if not isinstance(obj.value, dict | list | tuple | PerlRef | str | bytes | int):
                raise TypeError(f"cannot freeze a PerlObject holding {type(obj.value)!r}")
            if id(obj) in self.tags:
                self._seen(obj)
            else:
                name = obj.class_name.encode("utf-8")
                idx = self.classes.get(obj.class_name)
                if idx is None:
                    self.classes[obj.class_name] = len(self.classes)
                    if len(name) <= 127:
                        parts.append(bytes((SX_BLESS, len(name))))
                    else:
                        parts.append(bytes((SX_BLESS, 0x80)) + self.i32(len(name)))
                    parts.append(name)
                elif idx <= 127:
                    parts.append(bytes((SX_IX_BLESS, idx)))
                else:
                    parts.append(bytes((SX_IX_BLESS, 0x80)) + self.i32(idx))
                # the blessed SV and the object share identity and one tag
                self.tags[id(obj)] = self.tag
                self.keep.append(obj)
                inner = obj.value
                if isinstance(inner, dict | list | tuple):
                    self.tags[id(inner)] = self.tag
                    self.keep.append(inner)
                    self.tag += 1
                    self._body(inner)
                else:
                    self.write(inner)
        elif isinstance(obj, PerlRef):
            if not self._seen(obj):
                parts.append(_OP_REF)
                self._value(obj.value)
        elif not self._seen(obj):
            self._body(obj)
        self.depth -= 1

    def _hash_start(self, obj: dict[Any, Any]) -> Iterable[tuple[Any, bytes]]:
        """Write a hash's opcode and count; return its (value, encoded key) pairs.

        A hash with a key that is not ASCII needs SX_FLAG_HASH and a flag byte
        before each key.  ASCII ``str`` keys of plain hashes are remembered, so
        that ``_body`` finds later hashes made of known keys without this work.
        """
        keys = [self._key(k) for k in obj]
        flagged = any(flag for flag, _ in keys)
        i32 = self.i32
        if flagged:
            self.parts.append(bytes((SX_FLAG_HASH, 0)) + i32(len(keys)))
            encoded = [bytes((flag,)) + i32(len(raw)) + raw for flag, raw in keys]
        else:
            self.parts.append(bytes((SX_HASH,)) + i32(len(keys)))
            encoded = [i32(len(raw)) + raw for _, raw in keys]
            plain = self.plain_keys
            for key, entry in zip(obj, encoded, strict=True):
                if type(key) is str:
                    plain[key] = entry
        return zip(obj.values(), encoded, strict=True)

    def _body(self, obj: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> None:
        """Write a hash's or an array's items: the loop where freezing spends its time.

        Strings, bytes, integers, floats, undef and plain containers are written
        right here from precomputed headers; any other value goes through
        ``_value``, which writes the same bytes for these, only slower.
        """
        parts = self.parts
        append = parts.append
        pairs: Iterable[tuple[Any, bytes]]
        if isinstance(obj, dict):
            plain = self.plain_keys
            if plain.keys() >= obj.keys():
                append(bytes((SX_HASH,)) + self.i32(len(obj)))
                pairs = zip(obj.values(), map(plain.__getitem__, obj), strict=True)
            else:
                pairs = self._hash_start(obj)
        else:
            append(bytes((SX_ARRAY,)) + self.i32(len(obj)))
            pairs = zip(obj, _NO_KEY, strict=False)
        netorder = self.netorder
        tags = self.tags
        keep = self.keep.append
        depth = self.depth
        tag = self.tag
        for value, key in pairs:
            kind = type(value)
            if kind is str:
                tag += 1
                if value.isascii():
                    n = len(value)
                    append(_SCALAR_HEADERS[n] if n < 256 else self._header(SX_LSCALAR, n))
                    append(value.encode())
                else:
                    raw = value.encode("utf-8", "surrogatepass")
                    n = len(raw)
                    append(_UTF8STR_HEADERS[n] if n < 256 else self._header(SX_LUTF8STR, n))
                    append(raw)
            elif kind is int:
                tag += 1
                if -128 <= value <= 127:
                    append(_SMALL_INTS[value + 128])
                elif netorder and -(2**31) <= value < 2**31:
                    append(_NETINT(SX_NETINT, value))
                elif not netorder and -(2**63) <= value < 2**63:
                    append(_NATIVE_INTEGER(SX_INTEGER, value))
                else:
                    self._number_string(value)
            elif kind is dict or kind is list or kind is tuple:
                # as _value and _container write it: a reference, then the container
                # or a back-reference to where it was written first
                if depth >= self.max_depth:
                    raise StorableError(f"data nested deeper than max_depth={self.max_depth}")
                tag += 1  # the RV
                first = tags.get(id(value))
                if first is not None:
                    append(_OP_REF + _OP_OBJECT + _BE_U32.pack(first))
                else:
                    append(_OP_REF)
                    tags[id(value)] = tag
                    keep(value)
                    self.tag = tag + 1
                    self.depth = depth + 1
                    self._body(value)
                    self.depth = depth
                    tag = self.tag
            elif kind is bytes:
                tag += 1
                n = len(value)
                append(_SCALAR_HEADERS[n] if n < 256 else self._header(SX_LSCALAR, n))
                append(value)
            elif value is None:
                tag += 1
                append(_OP_UNDEF)
            elif kind is float:
                tag += 1
                if netorder:
                    self._number_string(value)
                else:
                    append(_NATIVE_DOUBLE(SX_DOUBLE, value))
            else:
                self.tag = tag
                self._value(value)
                tag = self.tag
            if key:
                append(key)
        self.tag = tag


def _perl_str_number(value: int | float) -> str:
    """Text for a number stored as a string (shortest form that round-trips)."""
    if isinstance(value, int):
        try:
            return str(int(value))
        except ValueError:  # beyond Python's int-to-string digit limit
            raise StorableError(f"an integer of {value.bit_length()} bits is too large") from None
    if math.isfinite(value):
        if value.is_integer() and abs(value) < 1e15 and math.copysign(1.0, value) > 0:
            return str(int(value))
        return repr(value)
    if math.isnan(value):
        return "NaN"
    return "Inf" if value > 0 else "-Inf"


def _freeze(obj: Any, netorder: bool, max_depth: int) -> bytes:
    if _speedups is not None:
        blob = _speedups.freeze(obj, netorder, max_depth)
        if isinstance(blob, bytes):
            return blob
    return _python_freeze(obj, netorder, max_depth)


def _python_freeze(obj: Any, netorder: bool, max_depth: int) -> bytes:
    """Serialize ``obj`` in Python (what the C accelerator leaves, and its reference)."""
    writer = _Writer(netorder, max_depth)
    try:
        if isinstance(obj, PerlRef):
            writer._container(obj)
        else:
            writer.write(obj)
    except RecursionError as exc:
        raise StorableError("data nested too deeply for the Python stack") from exc
    return b"".join(writer.parts)


def freeze(obj: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Serialize plain data like Perl's ``Storable::freeze`` on x86-64 Linux.

    Native order (little-endian, 8-byte IV and NV, as Perl on x86-64).  Accepts
    ``dict`` (keys ``str``/``bytes``; non-ASCII ``str`` keys use the UTF-8 key
    flag), ``list``/``tuple``, ``str`` (UTF-8 flagged when not ASCII),
    ``bytes``, ``int`` (beyond 64 bits: decimal string, as Perl does), ``float``,
    ``bool`` (``PL_sv_yes``/``PL_sv_no``), ``None``, and ``PerlObject``/
    ``PerlRef`` wrapping those.  Shared and cyclic containers are written
    as back-references.
    """
    return _freeze(obj, False, max_depth)


def nfreeze(obj: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Serialize plain data like Perl's ``Storable::nfreeze`` (portable network order).

    As in Perl, integers outside 32 bits and floats are written as decimal
    strings (floats in the shortest text that round-trips, ``Inf``/``NaN``).
    """
    return _freeze(obj, True, max_depth)
