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


def test_the_perl_page_reads_a_seeded_storable_session(demo: TestApp) -> None:
    demo.reset()
    empty = demo.get("/perl")
    assert "No Perl session" in empty.text
    login = demo.get("/perl/login")
    assert login.status_int == 303
    session_id = demo.cookies["session_id"]
    assert len(session_id) == 32
    page = login.follow()
    assert "Logged in on the Perl side as <b>Zoë Perlmonger</b>" in page.text
    assert f"session <code>{session_id[:6]}...</code>" in page.text
    assert "<code>_SESSION_ETIME</code>" in page.text
    assert "[&#x27;admin&#x27;, &#x27;editor&#x27;]" in page.text


def test_the_perl_page_survives_a_forged_cookie(demo: TestApp) -> None:
    demo.reset()
    page = demo.get("/perl/forge").follow()
    assert page.status_int == 200
    assert "No Perl session" in page.text


def test_the_rate_limited_endpoint_shows_its_headers_then_429(demo: TestApp) -> None:
    page = demo.get("/ratelimit")
    assert "5/10 seconds" in page.text and "Call the endpoint" in page.text
    assert page.headers["RateLimit-Policy"] == '"default";q=120;w=60'
    answers = [demo.get("/ratelimit/api", status="*") for _ in range(6)]
    assert [answer.status_int for answer in answers] == [200] * 5 + [429]
    assert answers[0].json["limits"] == [{"policy": "view", "limit": "5/10s", "remaining": 4}]
    assert answers[0].headers["RateLimit-Policy"] == '"view";q=5;w=10'
    assert answers[4].headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(answers[5].headers["Retry-After"]) <= 20


def test_the_session_page(demo: TestApp) -> None:
    demo.reset()
    first = demo.get("/session")
    assert '<b id="visits">1</b>' in first.text
    cookie = demo.cookies["session_id"]
    assert '<b id="visits">2</b>' in demo.get("/session").text
    form = first.forms[1]  # the notes form
    form["note"] = "buy milk"
    added = form.submit().follow()
    assert "<li>buy milk</li>" in added.text and "Note added." in added.text
    demo.post("/session/note", {"note": "forged"}, status=400)  # no CSRF token
    login = demo.get("/session").forms[0]
    login["user"] = "ada"
    welcome = login.submit().follow()
    assert "Logged in as <b>ada</b>" in welcome.text and "Welcome, ada!" in welcome.text
    assert demo.cookies["session_id"] != cookie  # the login rotated the id
    assert "<li>buy milk</li>" in welcome.text  # and kept the data
    logout = welcome.forms[0].submit().follow()
    assert "Logged out" in logout.text and "ada" not in logout.text
    assert '<b id="visits">1</b>' in logout.text
