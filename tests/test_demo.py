"""The demo application that `make demo` serves, loaded from its own .ini."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest
from pyramid.paster import get_app
from webtest import TestApp

DEMO = Path(__file__).resolve().parent.parent / "demo"
PAGES = ["/", "/cache", "/session", "/ratelimit", "/perl"]


@pytest.fixture
def demo() -> TestApp:
    """A fresh demo application (its own memory store) for each test."""
    sys.path.insert(0, str(DEMO))
    try:
        return TestApp(get_app(str(DEMO / "demo.ini")))
    finally:
        sys.path.remove(str(DEMO))


def test_the_overview_lists_each_feature_and_its_store(demo: TestApp) -> None:
    page = demo.get("/")
    features = page.html.find(id="features")
    rows = [
        [cell.get_text(" ", strip=True) for cell in row.find_all("td")]
        for row in features.find_all("tr")[1:]
    ]
    assert [(row[0], row[1], row[3]) for row in rows] == [
        ("Cache", "request.cache", "memory ( kvs.cache )"),
        ("Session", "request.session", "memory ( kvs.session )"),
        ("Rate limit", "kvs.ratelimit", "memory ( kvs.ratelimit )"),
        ("Perl session", "request.perlsess", "memory ( kvs.perlsess )"),
    ]
    assert "120 requests per 60 seconds per ip" in page.text
    menu = [link["href"] for link in page.html.find("nav").find_all("a")]
    assert menu == [f"http://localhost{path}" for path in PAGES]


@pytest.mark.parametrize("path", PAGES[1:])
def test_every_feature_page_names_its_store(demo: TestApp, path: str) -> None:
    note = demo.get(path).html.find(class_="store").get_text(" ", strip=True)
    assert note.startswith("Store: the in-process memory store")
    assert re.search(r"configured by kvs\.\w+ in demo.ini; its keys start with \w+::", note)


def test_the_cache_page_shows_a_miss_then_a_hit(demo: TestApp) -> None:
    first = demo.get("/cache")
    assert 'a cache <b class="miss">miss</b>' in first.text
    second = demo.get("/cache")
    assert 'a cache <b class="hit">hit</b>' in second.text
    assert second.html.find(id="visits").text == "2"


def test_the_perl_page_reads_a_seeded_storable_session(demo: TestApp) -> None:
    empty = demo.get("/perl")
    assert "No Perl session" in empty.text
    login = demo.get("/perl/login")
    assert login.status_int == 303
    session_id = demo.cookies["CGISESSID"]
    assert len(session_id) == 32
    page = login.follow()
    assert "Logged in on the Perl side as <b>Zoë Perlmonger</b>" in page.text
    assert f"session <code>{session_id[:6]}...</code>" in page.text
    assert "<code>_SESSION_ETIME</code>" in page.text
    assert "[&#x27;admin&#x27;, &#x27;editor&#x27;]" in page.text


def test_the_perl_and_session_cookies_leave_each_other_alone(
    demo: TestApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        form = demo.get("/session").forms["login"]
        form["user"] = "ada"
        form.submit().follow()
        session_cookie = demo.cookies["session_id"]
        assert "Logged in on the Perl side" in demo.get("/perl/login").follow().text
        assert demo.cookies["session_id"] == session_cookie  # not replaced
        page = demo.get("/session")
        assert page.html.find(id="user").text == "ada"
        assert "Logged in on the Perl side" in demo.get("/perl").text
    assert set(demo.cookies) == {"session_id", "CGISESSID"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []  # no "malformed cookie": each reads its own


def test_a_page_without_the_perl_cookie_logs_no_warning(
    demo: TestApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "pyramid_kvs"):
        assert "No Perl session" in demo.get("/perl").text
    assert caplog.records == []


def test_the_perl_page_survives_a_forged_cookie(
    demo: TestApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "pyramid_kvs.perlsess"):
        page = demo.get("/perl/forge").follow()
    assert page.status_int == 200
    assert "No Perl session" in page.text
    assert "ignored a malformed CGISESSID cookie" in caplog.text


def test_the_rate_limit_page_names_its_algorithm_and_explains_reset(demo: TestApp) -> None:
    page = demo.get("/ratelimit")
    assert "5/10 seconds" in page.text and "Call the endpoint" in page.text
    assert page.html.find(id="algorithm").text == "fixed"
    assert "counts down to the end of the current window" in page.text
    assert "the seconds to\nwait before a refused request would pass" in page.text
    assert page.headers["RateLimit-Policy"] == '"default";q=120;w=60'


def test_the_rate_limited_endpoint_shows_its_headers_then_429(demo: TestApp) -> None:
    json = {"Accept": "application/json"}
    answers = []
    # windows are aligned on the clock: one may end within the burst, so call until
    # the first 429 (at most two windows' worth)
    for _ in range(11):
        answers.append(demo.get("/ratelimit/api", headers=json, status="*"))
        if answers[-1].status_int == 429:
            break
    refused, allowed = answers[-1], answers[-6:-1]
    assert refused.status_int == 429
    assert [answer.status_int for answer in allowed] == [200] * 5
    assert [answer.json["limits"][0]["remaining"] for answer in allowed] == [4, 3, 2, 1, 0]
    assert allowed[0].json["limits"][0] == {"policy": "view", "limit": "5/10s", "remaining": 4}
    assert allowed[0].headers["RateLimit-Policy"] == '"view";q=5;w=10'
    assert allowed[4].headers["X-RateLimit-Remaining"] == "0"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 10
    assert refused.json == {"allowed": False, "retry_after": retry_after}
    # a browser following the link gets the demo's page, with a way back
    page = demo.get("/ratelimit/api", headers={"Accept": "text/html"}, status=429)
    assert page.content_type == "text/html"
    assert "Too many requests (429)" in page.text
    assert int(page.html.find(id="retry-after").text) == int(page.headers["Retry-After"])
    assert page.html.find(id="back")["href"] == "http://localhost/ratelimit"
    assert page.html.find("nav") is not None  # the layout


def test_the_session_page(demo: TestApp) -> None:
    first = demo.get("/session")
    assert first.html.find(id="visits").text == "1"
    assert first.html.find(id="session-id").text == "new"
    cookie = demo.cookies["session_id"]
    second = demo.get("/session")
    assert second.html.find(id="visits").text == "2"
    shown = second.html.find(id="session-id").text
    assert len(shown) == 8 and cookie.startswith(shown)  # the id, shortened
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", second.html.find(id="created").text)
    form = second.forms["note"]
    form["note"] = "buy milk"
    added = form.submit().follow()
    assert "<li>buy milk</li>" in added.text and "Note added." in added.text
    assert "Note added." not in demo.get("/session").text  # a flash shows once
    login = demo.get("/session").forms["login"]
    login["user"] = "ada"
    welcome = login.submit().follow()
    assert 'Logged in as <b id="user">ada</b>' in welcome.text
    assert "Welcome, ada!" in welcome.text
    assert demo.cookies["session_id"] != cookie  # the login rotated the id
    rotated = welcome.html.find(id="session-id").text
    assert rotated != shown and demo.cookies["session_id"].startswith(rotated)
    assert "<li>buy milk</li>" in welcome.text  # and kept the data
    logout = welcome.forms["logout"].submit().follow()
    assert "Logged out" in logout.text and "ada" not in logout.text
    assert logout.html.find(id="visits").text == "1"


def test_a_forged_form_is_refused_in_the_layout_and_changes_nothing(demo: TestApp) -> None:
    login = demo.get("/session").forms["login"]
    login["user"] = "ada"
    login.submit()
    cookie = demo.cookies["session_id"]
    page = demo.get("/session")
    refused = page.forms["forged"].submit(status=400)
    assert (
        "Form refused (400)" in refused.text and "CSRF token is missing or wrong" in refused.text
    )
    assert refused.html.find("nav") is not None  # the layout
    assert refused.html.find(id="back")["href"] == "http://localhost/session"
    assert "Set-Cookie" not in refused.headers
    # a cross-site form: the browser sends no cookie; nothing is set either
    stranger = TestApp(demo.app)
    forged = stranger.post("/session/note", {"note": "forged"}, status=400)
    assert "Set-Cookie" not in forged.headers
    after = demo.get("/session")
    assert demo.cookies["session_id"] == cookie
    assert after.html.find(id="user").text == "ada"
    assert "forged" not in after.html.find(id="notes").text
