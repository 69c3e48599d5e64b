"""Tests for pyramid_kvs.storable against the real Perl Storable.

The expected values are not written by hand: ``tests/perl/storable_corpus.pl``
freezes many Perl values with ``freeze`` and ``nfreeze``, thaws them again in
Perl and describes what Perl got back (``tests/perl/StorableDescribe.pm``).  We
thaw the same bytes and compare descriptions, so the reader is checked against
Perl's own behaviour.  Perl is a hard requirement: without it these tests fail.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyramid_kvs import storable
from pyramid_kvs.storable import (
    PerlCode,
    PerlHook,
    PerlObject,
    PerlRef,
    PerlRegexp,
    PerlTied,
    PerlVString,
    StorableError,
    freeze,
    nfreeze,
    perl_number,
    thaw,
)

PERL_DIR = Path(__file__).parent / "perl"


def _run_perl(script: str, stdin: bytes = b"") -> bytes:
    try:
        proc = subprocess.run(
            ["perl", str(PERL_DIR / script)], input=stdin, capture_output=True, timeout=120
        )
    except FileNotFoundError:  # a missing perl is a setup error, not a skip
        pytest.fail("perl is required to run the Storable tests", pytrace=False)
    if proc.returncode:
        pytest.fail(f"{script} failed: {proc.stderr.decode(errors='replace')}", pytrace=False)
    return proc.stdout


def _load_corpus() -> list[dict[str, Any]]:
    try:
        proc = subprocess.run(
            ["perl", str(PERL_DIR / "storable_corpus.pl")], capture_output=True, timeout=120
        )
    except FileNotFoundError:
        return [{"name": "perl-missing", "error": "perl is not installed"}]
    if proc.returncode:
        return [{"name": "corpus-failed", "error": proc.stderr.decode(errors="replace")}]
    return json.loads(proc.stdout)


CORPUS = _load_corpus()
CASE_IDS = [case["name"] for case in CORPUS]


def _require_accelerator() -> None:
    """Skip where the optional C accelerator was not built; in CI, fail."""
    if storable._speedups is None:
        if os.environ.get("CI"):
            pytest.fail("the C accelerator of pyramid_kvs.storable was not built (setup.py)")
        pytest.skip("the C accelerator of pyramid_kvs.storable is not built here")


@pytest.fixture(params=["compiled", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through thaw/freeze with the C accelerator, then in pure Python."""
    if request.param == "python":
        monkeypatch.setattr(storable, "_speedups", None)
    else:
        _require_accelerator()
    return str(request.param)


both_paths = pytest.mark.usefixtures("path")
# hypothesis runs the examples of one test under one choice of path
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


# ---------------------------------------------------------------------------
# Descriptions: Python values in the format StorableDescribe.pm uses for Perl.


def describe(value: Any, ids: dict[int, int] | None = None) -> Any:
    """Describe a thawed Python value like StorableDescribe describes Perl's."""
    if ids is None:
        ids = {}
    if value is None:
        return {"t": "undef"}
    if value is True or value is False:
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": str(value)}
    if isinstance(value, float):
        return {"t": "num", "v": (f"{value:.17g}").lower()}
    if isinstance(value, str):
        return {"t": "str", "hex": value.encode("utf-8", "surrogatepass").hex()}
    if isinstance(value, bytes):
        return {"t": "bytes", "hex": value.hex()}
    if isinstance(value, PerlVString):
        return {"t": "vstring", "literal": value.literal, "v": describe(value.value, ids)}
    if isinstance(value, PerlTied) and value.kind in ("scalar", "key", "idx"):
        desc = {"t": "tied", "kind": value.kind, "obj": describe(value.object, ids)}
        if value.kind == "key":
            desc["key"] = describe(value.key, ids)
        elif value.kind == "idx":
            desc["key"] = {"t": "int", "v": str(value.key)}
        return desc
    if id(value) in ids:
        return {"t": "seen", "id": ids[id(value)]}
    ident = ids[id(value)] = len(ids)
    if isinstance(value, PerlObject):
        return {
            "t": "obj",
            "class": value.class_name,
            "id": ident,
            "v": _content(value.value, ids),
        }
    if isinstance(value, PerlRef):
        return {"t": "ref", "id": ident, "v": describe(value.value, ids)}
    desc = _content(value, ids)
    desc["id"] = ident
    return desc


def _content(value: Any, ids: dict[int, int]) -> Any:
    if isinstance(value, dict):
        keys = sorted(((describe(k), k) for k in value), key=lambda item: item[0]["hex"])
        return {"t": "hash", "items": [[kd, describe(value[k], ids)] for kd, k in keys]}
    if isinstance(value, list):
        return {"t": "array", "items": [describe(v, ids) for v in value]}
    if isinstance(value, PerlHook):
        return {
            "t": "hook",
            "kind": value.kind,
            "frozen": describe(value.frozen),
            "refs": [describe(r, ids) for r in value.refs],
        }
    if isinstance(value, PerlTied):
        return {"t": "tied", "kind": value.kind, "obj": describe(value.object, ids)}
    if isinstance(value, PerlRef):  # a blessed reference: Perl describes the referent
        return describe(value.value, ids)
    if isinstance(value, PerlCode):
        return {"t": "code", "src": value.source}
    if isinstance(value, PerlRegexp):
        return {"t": "regexp", "pat": value.pattern, "flags": value.flags}
    return describe(value, ids)


def normalize(desc: Any) -> Any:
    """Turn Perl's description into what the Python reader must give (text="auto")."""
    if isinstance(desc, list):
        return [normalize(d) for d in desc]
    if not isinstance(desc, dict):
        return desc
    if desc.get("t") == "pv":
        raw = bytes.fromhex(desc["hex"])
        if desc["utf8"]:
            return {"t": "str", "hex": desc["hex"]}
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"t": "bytes", "hex": desc["hex"]}
        return {"t": "str", "hex": desc["hex"]}
    if desc.get("t") == "num":
        return {"t": "num", "v": desc["v"].lower()}
    if desc.get("t") == "regexp":
        # Perl 5.36 recompiles a thawed pattern's UTF-8 bytes as Latin-1; we
        # return the intended text (UTF-8 when valid).
        try:
            pattern = desc["pat"].encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pattern = desc["pat"]
        return {**desc, "pat": pattern}
    return {k: normalize(v) for k, v in desc.items()}


# ---------------------------------------------------------------------------
# Perl-generated corpus


def test_corpus_is_available() -> None:
    assert "error" not in CORPUS[0], CORPUS[0].get("error")
    assert len(CORPUS) > 80


@both_paths
@pytest.mark.parametrize("kind", ["freeze", "nfreeze"])
@pytest.mark.parametrize("case", CORPUS, ids=CASE_IDS)
def test_perl_corpus(case: dict[str, Any], kind: str) -> None:
    if "error" in case:
        pytest.fail(case["error"], pytrace=False)
    value = thaw(bytes.fromhex(case[kind]))
    assert describe(value) == normalize(case[f"perl_{kind}"])


def _recording(op: int, handler: Any, found: set[int]) -> Any:
    def record(reader: Any, cname: str | None) -> Any:
        found.add(op)
        return handler(reader, cname)

    return record


def _corpus_opcodes() -> set[int]:
    """Opcodes dispatched while thawing the corpus (recorded by wrapping the table).

    The reader that dispatches every value through the table is used: the inlined
    loop decodes the common opcodes without it.
    """
    found: set[int] = set()
    for case in CORPUS:
        for kind in ("freeze", "nfreeze"):
            blob = bytes.fromhex(case[kind])
            reader = storable._Reader(blob, "auto", False, 256, inline=False)
            reader.ops = tuple(
                _recording(op, handler, found) for op, handler in enumerate(reader.ops)
            )
            reader.run()
    return found


def test_corpus_covers_perl_emitted_opcodes() -> None:
    # Every opcode Storable 3.26 emits, except SX_LOBJECT (needs > 2 GiB of data);
    # SX_LOBJECT and the 2.12 booleans are tested below with crafted blobs.
    assert _corpus_opcodes() == set(range(33))


# ---------------------------------------------------------------------------
# Crafted blobs for what Perl 5.36 cannot emit


def _net(body: bytes) -> bytes:
    return b"\x05\x0b" + body


def _native(body: bytes, minor: int = 11) -> bytes:
    return b"\x04" + bytes([minor]) + b"\x0812345678\x04\x08\x08\x08" + body


def _perl_thaw(blob: bytes) -> Any:
    return normalize(json.loads(_run_perl("thaw_describe.pl", blob)))


def test_lobject_string_array_hash_checked_by_perl() -> None:
    # SX_LOBJECT with small sizes: Perl accepts them, so Perl checks us.
    body = (
        b"\x02\x00\x00\x00\x03"
        + b"\x21\x01"
        + struct.pack(">Q", 3)
        + b"abc"
        + b"\x21\x18"
        + struct.pack(">Q", 2)
        + "é".encode()
        + b"\x04\x21\x02"
        + struct.pack(">Q", 2)
        + b"\x08\x81\x08\x82"
    )
    blob = _net(body)
    assert thaw(blob) == ["abc", "é", [1, 2]]
    assert describe(thaw(blob)) == _perl_thaw(blob)
    hashes = _net(b"\x04\x21\x03" + struct.pack(">Q", 1) + b"\x08\x81\x00\x00\x00\x01k")
    assert thaw(hashes) == {"k": 1}
    assert describe(thaw(hashes)) == _perl_thaw(hashes)
    # a large flagged hash: per-key flags as Storable's store_lhash writes them
    # (Perl's own get_lhash reader forgets to read them, so Perl can't check this)
    flagged = _net(
        b"\x21\x19\x00" + struct.pack(">Q", 1) + b"\x08\x82\x01\x00\x00\x00\x02\xc3\xa9"
    )
    assert thaw(flagged) == {"é": 2}


def test_lobject_native_order_and_backref() -> None:
    blob = _native(
        b"\x02\x02\x00\x00\x00\x04\x03\x00\x00\x00\x00" + b"\x04\x21\x00" + struct.pack("<Q", 1)
    )
    value = thaw(blob)  # tag 1 is the first reference: the second item is a ref to a ref
    assert value == [{}, PerlRef({})] and value[1].value is value[0]
    assert describe(value) == _perl_thaw(blob)


def test_lobject_hook() -> None:
    blob = _net(b"\x21\x13\x02\x03Foo" + struct.pack(">Q", 3) + b"abc")
    assert thaw(blob) == PerlObject("Foo", PerlHook("hash", "abc"))


def test_boolean_opcodes_of_storable_3_32() -> None:
    blob = b"\x05\x0c\x02\x00\x00\x00\x03\x22\x23\x04\x22"
    assert thaw(blob) == [True, False, PerlRef(True)]
    assert thaw(_native(b"\x22", minor=12)) is True


def test_minor_13_is_rejected() -> None:
    with pytest.raises(StorableError, match="version"):
        thaw(b"\x05\x0d\x22")


def test_store_file_magic_and_big_endian_native() -> None:
    assert thaw(b"pst0" + _net(b"\x08\x85")) == 5
    big = b"\x04\x0b\x0887654321\x04\x08\x08\x08" + b"\x02\x00\x00\x00\x02\x06"
    big += struct.pack(">q", -(2**40)) + b"\x07" + struct.pack(">d", 2.5)
    assert thaw(big) == [-(2**40), 2.5]
    small = b"\x04\x0b\x041234\x04\x04\x04\x08\x06" + struct.pack("<i", -70000)
    assert thaw(small) == -70000


def test_store_file_from_perl(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    for func in ("store", "nstore"):
        code = f"use Storable qw({func}); {func}({{a => [1, 'x']}}, $ARGV[0]) or die"
        subprocess.run(["perl", "-e", code, str(path)], check=True)
        assert thaw(path.read_bytes()) == {"a": [1, "x"]}


# ---------------------------------------------------------------------------
# Text modes and numeric strings


def test_text_modes() -> None:
    blob = nfreeze(["é", "é".encode(), b"\xe9", b"ab"])
    assert thaw(blob) == ["é", "é", b"\xe9", "ab"]
    assert thaw(blob, text="str") == ["é", "é", "é", "ab"]
    assert thaw(blob, text="bytes") == ["é", "é".encode(), b"\xe9", b"ab"]
    keys = nfreeze({b"\xe9": 1, "k": 2})
    assert thaw(keys) == {b"\xe9": 1, "k": 2}
    assert thaw(keys, text="str") == {"é": 1, "k": 2}
    assert thaw(keys, text="bytes") == {b"\xe9": 1, b"k": 2}
    with pytest.raises(ValueError):
        thaw(blob, text="latin1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", 12),
        ("-3", -3),
        ("0", 0),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        ("0.1", 0.1),
        ("1e+20", 1e20),
        ("1e-05", 1e-05),
        ("18446744073709551615", 2**64 - 1),
        ("-9223372036854775808", -(2**63)),
        ("0123", "0123"),
        ("1e5", "1e5"),
        ("1.50", "1.50"),
        ("+1", "+1"),
        (" 1", " 1"),
        ("1 ", "1 "),
        ("-0", "-0"),
        ("", ""),
        ("inf", "inf"),
        ("NaN", "NaN"),
        ("0x10", "0x10"),
        ("18446744073709551616", "18446744073709551616"),
        ("1.0", "1.0"),
        ("3.14159265358979", 3.14159265358979),
        ("3.141592653589793", "3.141592653589793"),
        ("١٢", "١٢"),
    ],
)
def test_perl_number(text: str, expected: Any) -> None:
    result = perl_number(text)
    assert result == expected
    assert type(result) is type(expected)


def test_numeric_strings_option_on_perl_nfreeze() -> None:
    case = next(c for c in CORPUS if c["name"] == "session-like")
    session = thaw(bytes.fromhex(case["nfreeze"]), numeric_strings=True)
    assert session["user"]["score"] == 98.5
    assert session["cart"][0]["price"] == 9.99
    assert session["_SESSION_ID"] == "d41d8cd98f00b204e9800998ecf8427e"
    plain = thaw(bytes.fromhex(case["nfreeze"]))
    assert plain["user"]["score"] == "98.5"
    strings = next(c for c in CORPUS if c["name"] == "numeric-looking strings")
    assert thaw(bytes.fromhex(strings["nfreeze"]), numeric_strings=True) == [
        "0123",
        12,
        -3,
        1.5,
        "1e5",
        " 1",
        "1.50",
    ]


# ---------------------------------------------------------------------------
# Python writes, Perl reads


PLAIN_VALUES: list[Any] = [
    {"a": 1, "b": "two", "c": [1, 2.5, None, True, False], "d": {}},
    {"é": "☺", "plain": "x" * 300, "u": "ü" * 200, b"raw": b"\x00\xff"},
    [0, -1, 127, -128, 128, -129, 2**31 - 1, -(2**31), 2**31, 2**63 - 1, -(2**63)],
    [2**64, -(2**70), 10**30],
    [0.1, -2.5, 1e300, 1e-300, float("inf"), -float("inf")],
    "root string",
    "rööt",
    42,
    [[[[["deep"]]]]],
    PerlObject("My::Class", {"x": [1]}),
    [PerlObject("Same", {}), PerlObject("Same", []), PerlObject("L" * 200, {})],
    {"ref": PerlRef("scalar"), "refref": PerlRef([1])},
]


@both_paths
@pytest.mark.parametrize("func", [freeze, nfreeze])
@pytest.mark.parametrize("value", PLAIN_VALUES, ids=[str(i) for i in range(len(PLAIN_VALUES))])
def test_perl_reads_python_output(value: Any, func: Any) -> None:
    blob = func(value)
    assert describe(thaw(blob)) == _perl_thaw(blob)


@both_paths
@pytest.mark.parametrize("func", [freeze, nfreeze])
def test_perl_reads_python_shared_and_cyclic(func: Any) -> None:
    shared = [1, 2]
    data: dict[str, Any] = {"a": shared, "b": shared, "c": {"d": shared}}
    data["self"] = data
    blob = func(data)
    back = thaw(blob)
    assert back["a"] is back["b"] is back["c"]["d"]
    assert back["self"] is back
    assert describe(back) == _perl_thaw(blob)


@both_paths
def test_round_trip_native_types() -> None:
    value = {"i": [1, -(2**40), 2**63 - 1], "f": [1.5, -0.0], "s": ["x", "é"], "b": [True, None]}
    assert thaw(freeze(value)) == value
    net = thaw(nfreeze(value))
    assert net["i"] == [1, "-1099511627776", "9223372036854775807"]
    assert net["f"] == ["1.5", "-0.0"]
    assert thaw(nfreeze(value), numeric_strings=True)["i"] == value["i"]


@both_paths
def test_freeze_rejects_unsupported() -> None:
    with pytest.raises(TypeError):
        freeze({1j: 1})
    with pytest.raises(TypeError):
        freeze([object()])
    deep: list[Any] = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(StorableError):
        freeze(deep)


plain_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@both_paths
@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(value=plain_data, network=st.booleans())
def test_perl_reads_generated_data(value: Any, network: bool) -> None:
    blob = nfreeze(value) if network else freeze(value)
    assert describe(thaw(blob)) == _perl_thaw(blob)


# ---------------------------------------------------------------------------
# Hostile input


def _blobs(limit: int = 700) -> list[bytes]:
    blobs = []
    for case in CORPUS:
        for kind in ("freeze", "nfreeze"):
            if kind in case and len(case[kind]) // 2 <= limit:
                blobs.append(bytes.fromhex(case[kind]))
    return blobs


@both_paths
def test_truncation_at_every_offset() -> None:
    count = 0
    for blob in _blobs():
        for cut in range(len(blob)):
            with pytest.raises(StorableError):
                thaw(blob[:cut])
            count += 1
    assert count > 1000


@both_paths
def test_trailing_bytes() -> None:
    for blob in _blobs(200):
        with pytest.raises(StorableError, match="trailing"):
            thaw(blob + b"\x00")


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x05",
        b"pst0",
        b"perl-store\x00",
        b"\x03\x0b\x08\x81",  # major 1
        b"\x07\x0b\x08\x81",  # major 3
        b"\x04\x0b\x0887654322\x04\x08\x08\x08\x08\x81",  # odd byte order
        b"\x04\x0b\x0812345678\x08\x08\x08\x08\x08\x81",  # sizeof(int) 8
        b"\x04\x0b\x0812345678\x04\x08\x08\x10\x08\x81",  # long double NV
        b"\x04\x0b\x0c12345678",  # header length beyond input
        b"\x05\x0b\x06" + b"\x00" * 8,  # native integer in network order
    ],
)
@both_paths
def test_bad_headers(blob: bytes) -> None:
    with pytest.raises(StorableError):
        thaw(blob)


@both_paths
@pytest.mark.parametrize("opcode", [36, 37, 0x62, 0x69, 200, 255])
def test_unknown_opcodes(opcode: int) -> None:
    with pytest.raises(StorableError, match="opcode"):
        thaw(_net(bytes([opcode])))
    with pytest.raises(StorableError, match="opcode"):
        thaw(_net(b"\x02\x00\x00\x00\x01" + bytes([opcode])))


@pytest.mark.parametrize(
    "body",
    [
        b"\x01\x80\x00\x00\x00abc",  # LSCALAR of 2**31 bytes
        b"\x01\xff\xff\xff\xffabc",  # LSCALAR of 4 GiB
        b"\x02\x7f\xff\xff\xff\x08\x81",  # ARRAY of 2**31-1 items
        b"\x02\xff\xff\xff\xff",  # negative count
        b"\x03\x7f\xff\xff\xff\x08\x81",
        b"\x19\x00\x7f\xff\xff\xff",
        b"\x18\x7f\xff\xff\xff",
        b"\x1e\x7f\xff\xff\xff",
        b"\x21\x02" + b"\xff" * 8,
        b"\x21\x03" + b"\x7f" * 8,
        b"\x21\x01" + b"\x00\x00\x01\x00\x00\x00\x00\x00",
        b"\x13\x82\x01A\x03abc\x7f",  # hook with 127 object ids
        b"\x13\x92\x01A\x03abc\x7f\xff\xff\xff",  # hook, large list length
        b"\x11\x80\x7f\xff\xff\xff",  # class name of 2 GiB
        b"\x03\x00\x00\x00\x01\x08\x81\x7f\xff\xff\xff",  # hash key of 2 GiB
    ],
)
@both_paths
def test_huge_counts_fail_fast(body: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(StorableError):
        thaw(_net(body))
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x00\x00\x00",  # back-reference before anything was seen
        b"\x02\x00\x00\x00\x01\x00\x00\x00\x00\x05",  # back-reference to a later tag
        b"\x12\x00\x03\x00\x00\x00\x00",  # IX_BLESS without a class table
        b"\x13\xa2\x05",  # hook with unknown class index
        b"\x13\x03\x09",  # hook with bad extra type
        b"\x13\x82\x01A\x00\x01\x00\x00\x00\x09",  # hook refers to unknown tag
        b"\x1a\x08\x81",  # code with a non-string body
        b"\x17\x02\xff\xfe",  # bad UTF-8 in UTF8STR
        b"\x21\x07" + b"\x00" * 8,  # LOBJECT with unexpected type
        b"\x21\x00" + b"\x00" * 7 + b"\x05",  # LOBJECT back-reference to unknown tag
        b"\x19\x00\x00\x00\x00\x01\x08\x81\x08\x02\x00\x00\x00\x01",  # ISSV key is a list
    ],
)
@both_paths
def test_malformed(body: bytes) -> None:
    with pytest.raises(StorableError):
        thaw(_net(body))


def test_issv_key() -> None:
    assert thaw(_net(b"\x19\x00\x00\x00\x00\x01\x08\x81\x08\x0a\x01k")) == {"k": 1}


@both_paths
def test_deep_nesting_is_a_storable_error() -> None:
    for opener in (b"\x04", b"\x02\x00\x00\x00\x01", b"\x1d\x01v", b"\x11\x01A"):
        blob = _net(opener * 100_000 + b"\x05")
        with pytest.raises(StorableError, match="max_depth"):
            thaw(blob)
    nested = _net(b"\x04" * 300 + b"\x08\x81")
    with pytest.raises(StorableError):
        thaw(nested)
    assert thaw(nested, max_depth=400) is not None
    with pytest.raises(StorableError):  # the Python stack gives out first
        thaw(_net(b"\x04" * 100_000 + b"\x05"), max_depth=10**6)


def test_max_size() -> None:
    blob = nfreeze(["x" * 1000])
    with pytest.raises(StorableError, match="max_size"):
        thaw(blob, max_size=100)
    assert thaw(blob, max_size=None) == ["x" * 1000]


def test_non_bytes_input() -> None:
    assert thaw(bytearray(nfreeze([1]))) == [1]
    assert thaw(memoryview(nfreeze([1]))) == [1]
    with pytest.raises(TypeError):
        thaw("text")  # type: ignore[arg-type]


_REAL = _blobs(400)


def _mutated(data: st.DataObject) -> bytes:
    """A Perl-made blob with one to four random edits."""
    blob = bytearray(data.draw(st.sampled_from(_REAL)))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if action == "set" and blob:
            blob[pos] = data.draw(st.integers(0, 255))
        elif action == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del blob[pos : pos + data.draw(st.integers(1, 8))]
        else:
            del blob[pos:]
    return bytes(blob)


@both_paths
@settings(max_examples=400, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_fuzz_mutated_blobs(data: st.DataObject) -> None:
    blob = _mutated(data)
    start = time.perf_counter()
    with contextlib.suppress(StorableError):
        thaw(blob)
    assert time.perf_counter() - start < 1.0


@both_paths
@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(body=st.binary(max_size=64), network=st.booleans())
def test_fuzz_random_bodies(body: bytes, network: bool) -> None:
    with contextlib.suppress(StorableError):
        thaw(_net(body) if network else _native(body))


@both_paths
def test_float_special_values() -> None:
    values = thaw(freeze([float("nan"), float("inf")]))
    assert math.isnan(values[0]) and values[1] == float("inf")
    assert thaw(nfreeze([float("nan"), float("inf")])) == ["NaN", "Inf"]


# ---------------------------------------------------------------------------
# The inlined loops against the plain reading
#
# thaw decodes the common opcodes inside one loop; storable._read(inline=False)
# reads every value through its opcode handler.  Both must read every blob alike,
# valid or not.

TEXT_OPTIONS = st.sampled_from(
    [("auto", False), ("str", False), ("bytes", False), ("auto", True), ("str", True)]
)


def _outcome(blob: bytes, *, inline: bool, text: Any = "auto", numeric: bool = False) -> Any:
    """What reading ``blob`` gives: a description of the value, or the error."""
    try:
        return describe(storable._read(blob, text, numeric, 256, inline=inline))
    except StorableError:
        return "StorableError"


@pytest.mark.parametrize("kind", ["freeze", "nfreeze"])
@pytest.mark.parametrize("case", CORPUS, ids=CASE_IDS)
def test_plain_reading_of_the_corpus(case: dict[str, Any], kind: str) -> None:
    if "error" in case:
        pytest.fail(case["error"], pytrace=False)
    value = storable._read(bytes.fromhex(case[kind]), "auto", False, 256, inline=False)
    assert describe(value) == normalize(case[f"perl_{kind}"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), options=TEXT_OPTIONS)
def test_inlined_loop_reads_mutated_blobs_as_the_plain_reading(
    data: st.DataObject, options: tuple[str, bool]
) -> None:
    blob = _mutated(data)
    text, numeric = options
    inlined = _outcome(blob, inline=True, text=text, numeric=numeric)
    assert inlined == _outcome(blob, inline=False, text=text, numeric=numeric)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=plain_data, network=st.booleans(), options=TEXT_OPTIONS)
def test_inlined_loop_reads_generated_data_as_the_plain_reading(
    value: Any, network: bool, options: tuple[str, bool]
) -> None:
    blob = nfreeze(value) if network else freeze(value)
    text, numeric = options
    inlined = _outcome(blob, inline=True, text=text, numeric=numeric)
    assert inlined != "StorableError"
    assert inlined == _outcome(blob, inline=False, text=text, numeric=numeric)


@pytest.mark.parametrize("inline", [True, False])
def test_references_to_containers_count_one_level(inline: bool) -> None:
    # the inlined loop reads references to containers itself: each is a level, as
    # in the handler, so an array in an array is two levels deeper, not one
    for levels in (127, 128, 129):
        blob = _net(b"\x02\x00\x00\x00\x01" + b"\x04\x02\x00\x00\x00\x01" * levels + b"\x05")
        for max_depth in range(254, 261):
            if 1 + 2 * levels <= max_depth:
                storable._read(blob, "auto", False, max_depth, inline=inline)
            else:
                with pytest.raises(StorableError, match="max_depth"):
                    storable._read(blob, "auto", False, max_depth, inline=inline)


# ---------------------------------------------------------------------------
# The writer's loop: tags for back-references, cached keys


def _containers(value: Any, found: list[Any]) -> list[Any]:
    if isinstance(value, dict | list) and not any(c is value for c in found):
        found.append(value)
        for child in value.values() if isinstance(value, dict) else value:
            _containers(child, found)
    return found


@st.composite
def shared_data(draw: st.DrawFn) -> Any:
    """Nested hashes and arrays that reuse a few keys and share (or cycle through)
    some of their containers: what the writer's key cache and tags must get right."""
    keys = draw(st.lists(st.text(max_size=6), min_size=1, max_size=5, unique=True))
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**31), max_value=2**31 - 1)
        | st.text(max_size=12)
    )
    root = draw(
        st.recursive(
            leaves,
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(st.sampled_from(keys), children, max_size=4)
            ),
            max_leaves=25,
        ).filter(lambda v: isinstance(v, dict | list))
    )
    containers = _containers(root, [])
    for _ in range(draw(st.integers(0, 4))):
        shared = draw(st.sampled_from(containers))
        holder = draw(st.sampled_from(containers))
        if isinstance(holder, list):
            holder.append(shared)
        else:
            holder[draw(st.sampled_from(keys))] = shared
    return root


@both_paths
@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(value=shared_data(), network=st.booleans())
def test_shared_containers_and_repeated_keys_round_trip(value: Any, network: bool) -> None:
    blob = nfreeze(value) if network else freeze(value)
    assert describe(thaw(blob)) == describe(value)


@both_paths
def test_cached_keys_follow_the_hash_kind() -> None:
    # "k" is cached by a plain hash, then meets a hash that needs per-key flags
    value = [{"k": 1}, {"k": 2, "é": 3}, {"k": 4}, {b"k": 5}, {"k": 6, 7: 8}]
    for blob in (freeze(value), nfreeze(value)):
        assert thaw(blob) == [{"k": 1}, {"k": 2, "é": 3}, {"k": 4}, {"k": 5}, {"k": 6, "7": 8}]
    assert describe(thaw(nfreeze(value))) == _perl_thaw(nfreeze(value))
    with pytest.raises(TypeError):  # True == 1, but a boolean key is refused
        nfreeze([{1: "a"}, {True: "b"}])


# ---------------------------------------------------------------------------
# The C accelerator against Python
#
# It reads and writes the plain part of the format and returns NotImplemented for
# anything else (then Python does the whole job): whatever it accepts, it must give
# exactly what Python gives, and it must accept no blob that Python refuses.

PLAIN_CASES = [
    "int -129",
    "int 18446744073709551615",
    "double 0.1",
    "utf8 flagged",
    "latin1 unflagged",
    "long utf8 string (LUTF8STR)",
    "array holes (SV_UNDEF)",
    "session-like",
]


def _python_outcome(blob: bytes) -> Any:
    return _outcome(blob, inline=True)


@pytest.fixture
def compiled() -> Any:
    _require_accelerator()
    return storable._speedups


def test_compiled_reader_reads_plain_corpus_cases_itself(compiled: Any) -> None:
    by_name = {case["name"]: case for case in CORPUS}
    for name in PLAIN_CASES:
        for kind in ("freeze", "nfreeze"):
            value = compiled.thaw(bytes.fromhex(by_name[name][kind]), 256)
            assert value is not NotImplemented, (name, kind)
            assert describe(value) == normalize(by_name[name][f"perl_{kind}"])


def test_compiled_reader_leaves_perl_types_to_python(compiled: Any) -> None:
    by_name = {case["name"]: case for case in CORPUS}
    for name in ("blessed hash", "ref to scalar", "shared scalar ref", "hook hash", "regexp"):
        assert compiled.thaw(bytes.fromhex(by_name[name]["nfreeze"]), 256) is NotImplemented


@settings(max_examples=500, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_compiled_reader_reads_mutated_blobs_as_python(compiled: Any, data: st.DataObject) -> None:
    blob = _mutated(data)
    value = compiled.thaw(blob, 256)
    if value is not NotImplemented:
        assert describe(value) == _python_outcome(blob)


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(body=st.binary(max_size=64), network=st.booleans())
def test_compiled_reader_reads_random_bodies_as_python(
    compiled: Any, body: bytes, network: bool
) -> None:
    blob = _net(body) if network else _native(body)
    value = compiled.thaw(blob, 256)
    if value is not NotImplemented:
        assert describe(value) == _python_outcome(blob)


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(value=plain_data | shared_data(), network=st.booleans(), max_depth=st.integers(1, 6))
def test_compiled_writer_and_reader_agree_with_python(
    compiled: Any, value: Any, network: bool, max_depth: int
) -> None:
    blob = storable._python_freeze(value, network, 256)
    assert compiled.freeze(value, network, 256) == blob
    thawed = compiled.thaw(blob, 256)
    assert thawed is not NotImplemented
    assert describe(thawed) == _python_outcome(blob)
    # the depth limit: refused where Python refuses, else the same bytes or value
    try:
        limited = storable._python_freeze(value, network, max_depth)
    except StorableError:
        assert compiled.freeze(value, network, max_depth) is NotImplemented
    else:
        assert compiled.freeze(value, network, max_depth) == limited
    try:
        described = describe(storable._read(blob, "auto", False, max_depth))
    except StorableError:
        assert compiled.thaw(blob, max_depth) is NotImplemented
    else:
        assert describe(compiled.thaw(blob, max_depth)) == described


def test_compiled_writer_leaves_other_types_to_python(compiled: Any) -> None:
    class Text(str):
        pass

    for value in (
        PerlObject("A", {}),
        [PerlRef(1)],
        {1: "number key"},
        [Text("subclass")],
        [bytearray(b"x")],
        {"deep": [[[]]]},
    ):
        limit = 2 if isinstance(value, dict) else 256
        assert compiled.freeze(value, True, limit) is NotImplemented
    assert compiled.freeze([10**5000], True, 256) is NotImplemented  # over the digit limit
    with pytest.raises(StorableError):
        nfreeze([10**5000])


def test_compiled_paths_take_any_depth_limit(compiled: Any) -> None:
    blob = nfreeze([[1]])
    assert compiled.thaw(blob, 10**30) == [[1]]
    assert compiled.thaw(blob, 2.5) is NotImplemented  # left to Python, which compares
    assert thaw(blob, max_depth=10**30) == [[1]]
    assert compiled.freeze([[1]], True, 10**30) == blob
    assert compiled.freeze([[1]], True, -1) is NotImplemented
