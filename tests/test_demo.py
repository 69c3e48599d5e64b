"""The demo application that `make demo` serves, loaded from its own .ini."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pyramid.paster import get_app
from webtest import TestApp

DEMO = Path(__file__).resolve().parent.parent / "demo"


@pytest.fixture(scope="module")
def demo() -> TestApp:
    sys.path.insert(0, str(DEMO))
    try:
        return TestApp(get_app(str(DEMO / "demo.ini")))
    finally:
        sys.path.remove(str(DEMO))


def test_the_cache_page_shows_a_miss_then_a_hit(demo: TestApp) -> None:
    first = demo.get("/")
    assert 'a cache <b class="miss">miss</b>' in first.text
    second = demo.get("/")
    assert 'a cache <b class="hit">hit</b>' in second.text
    assert "Visits counted" in second.text and ": 2</p>" in second.text
