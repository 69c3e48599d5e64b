"""``pyramid_kvs.cookies.cookie_value``: one cookie read as WebOb reads it.

The comparison with WebOb over generated headers is in ``test_session.py``; here,
what is its own: the bytes of another cookie, and undecodable values.
"""

from __future__ import annotations

import pytest

from pyramid_kvs.cookies import cookie_value


def latin1(text: str) -> str:
    """A header as WSGI gives it: its UTF-8 bytes, as Latin-1 text."""
    return text.encode("utf-8").decode("latin-1")


def test_absent_present_last_one_wins() -> None:
    assert cookie_value({}, "sid") is None
    assert cookie_value({"HTTP_COOKIE": "other=1"}, "sid") is None
    assert cookie_value({"HTTP_COOKIE": "a=1; sid=abc; b=2"}, "sid") == "abc"
    assert cookie_value({"HTTP_COOKIE": "sid=first;sid=second"}, "sid") == "second"
    assert cookie_value({"HTTP_COOKIE": "xsid=no; sid_x=no"}, "sid") is None


def test_utf8_values_are_decoded_and_other_bytes_refused() -> None:
    assert cookie_value({"HTTP_COOKIE": latin1("sid=café")}, "sid") == "café"
    with pytest.raises(UnicodeDecodeError):
        cookie_value({"HTTP_COOKIE": "sid=caf\xe9"}, "sid")  # Latin-1, not UTF-8
    with pytest.raises(UnicodeDecodeError):
        cookie_value({"HTTP_COOKIE": "sid=\u2603"}, "sid")  # not even a WSGI header


def test_another_cookies_bytes_do_not_hide_this_one() -> None:
    assert cookie_value({"HTTP_COOKIE": "theirs=caf\xe9; sid=abc"}, "sid") == "abc"


def test_quoted_headers_are_webobs() -> None:
    assert cookie_value({"HTTP_COOKIE": 'sid="a b"; c=1'}, "sid") == "a b"
    with pytest.raises(UnicodeDecodeError):
        cookie_value({"HTTP_COOKIE": 'sid="caf\xe9"'}, "sid")
