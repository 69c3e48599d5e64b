"""Hash tags follow Redis Cluster's rule: the slot of a key is its tag's."""

from __future__ import annotations

from binascii import crc_hqx

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from pyramid_kvs.stores.hash_tags import hash_tag, tagged

TEXT = st.text(alphabet="ab{}:", max_size=12)


def slot(text: str) -> int:
    return key_slot(text.encode())


def test_the_tag_is_between_the_first_brace_and_the_next_closing_one() -> None:
    assert hash_tag("session::{abc}") == "abc"
    assert hash_tag("a{b}c{d}") == "b"
    assert hash_tag("{}x{y}") is None  # an empty first tag: the whole key counts
    assert hash_tag("no braces") is None
    assert hash_tag("open{only") is None
    assert tagged("ip:192.0.2.1") == "{ip:192.0.2.1}"
    assert tagged("session:{abc}") == "session:{abc}"
    assert hash_tag(tagged("")) == "_" and hash_tag(tagged("}x")) == "_"


@given(TEXT)
def test_hash_tag_is_what_redis_hashes(key: str) -> None:
    tag = hash_tag(key)
    if tag is not None:
        assert slot(key) == slot(tag)
    elif "{" in key:  # braces without a tag: the whole key is hashed
        assert slot(key) == crc_hqx(key.encode(), 0) % 16384


@given(TEXT, TEXT, TEXT)
def test_every_key_that_starts_with_a_tagged_text_shares_its_slot(
    holder: str, first: str, second: str
) -> None:
    prefix = tagged(holder)
    assert slot(prefix + first) == slot(prefix + second)
