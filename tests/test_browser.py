"""The demo in a real browser: headless Chromium, driven by Playwright, over HTTP.

What WebTest cannot show: that a browser keeps the cookies pyramid_kvs sets
(SameSite, HttpOnly, signed values), follows the redirects, runs the rate limit
page's script and renders the error pages.  The demo is served by waitress on a free
loopback port, in a thread of this process.

Chromium is Debian's (``make test`` installs the ``chromium`` package): Playwright
cannot download a browser here.  A missing browser fails the setup, never skips.
On a failure, a screenshot of the page is saved in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from pyramid.paster import get_app
from waitress.server import create_server

from conftest import PHASE_REPORTS

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
ARTIFACTS = ROOT / "test-artifacts"
#: Debian's Chromium; PYRAMID_KVS_CHROMIUM names another executable
CHROMIUM = os.environ.get("PYRAMID_KVS_CHROMIUM", "/usr/bin/chromium")
#: what lets Chromium run headless as root in a container, with no network of its own
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: how long one step may take before the test fails (milliseconds)
STEP_TIMEOUT = 10_000


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """The demo application of demo.ini, served by waitress on a free loopback port."""
    sys.path.insert(0, str(DEMO))
    try:
        app = get_app(str(DEMO / "demo.ini"))
    finally:
        sys.path.remove(str(DEMO))
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, name="demo-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    server.task_dispatcher.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's chromium package "
            "(scripts/install-system-deps.sh does) or set PYRAMID_KVS_CHROMIUM"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, demo_url: str) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) for each test."""
    fresh = browser.new_context(base_url=demo_url)
    fresh.set_default_timeout(STEP_TIMEOUT)
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page of *context*; screenshot in test-artifacts/ if the test fails."""
    opened = context.new_page()
    yield opened
    report = request.node.stash.get(PHASE_REPORTS, {}).get("call")
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        path = ARTIFACTS / f"{name}.png"
        opened.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the failed page: {path} ({opened.url})")


def cookie(context: BrowserContext, name: str) -> str | None:
    values = [c["value"] for c in context.cookies() if c["name"] == name]
    return values[0] if values else None


def log_in(page: Page, user: str) -> None:
    page.goto("/session")
    page.locator("#login input[name=user]").fill(user)
    page.locator("#login button").click()
    expect(page.locator("#user")).to_have_text(user)


def test_the_session_cookie_persists_across_pages(page: Page, context: BrowserContext) -> None:
    page.goto("/")
    expect(page.locator("h1")).to_have_text("What this demo shows")
    page.get_by_role("link", name="Session").first.click()
    expect(page.locator("#visits")).to_have_text("1")
    expect(page.locator("#session-id")).to_have_text("new")
    issued = cookie(context, "session_id")
    assert issued is not None
    session_cookie = next(c for c in context.cookies() if c["name"] == "session_id")
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Lax"
    page.goto("/cache")
    expect(page.locator("#visits")).to_have_text("1")  # the cache page's own counter
    page.goto("/session")
    expect(page.locator("#visits")).to_have_text("2")
    page.reload()
    expect(page.locator("#visits")).to_have_text("3")
    assert cookie(context, "session_id") == issued
    expect(page.locator("#session-id")).to_have_text(issued[:8])


def test_a_flash_message_shows_once(page: Page) -> None:
    page.goto("/session")
    page.locator("#note input[name=note]").fill("buy milk")
    page.locator("#note button").click()
    expect(page.locator(".flash")).to_have_text("Note added.")
    expect(page.locator("#notes")).to_have_text("buy milk")
    page.reload()
    expect(page.locator(".flash")).to_have_text("")
    expect(page.locator("#notes")).to_have_text("buy milk")


def test_login_rotates_the_session_id(page: Page, context: BrowserContext) -> None:
    page.goto("/session")
    page.reload()  # the first page saves the new session; now it has an id
    before = page.locator("#session-id").inner_text()
    assert len(before) == 8
    log_in(page, "ada")
    expect(page.locator(".flash")).to_contain_text("Welcome, ada! Your session id has changed.")
    after = page.locator("#session-id").inner_text()
    assert len(after) == 8 and after != before
    rotated = cookie(context, "session_id")
    assert rotated is not None and rotated.startswith(after)


def test_a_forged_form_is_refused_and_changes_nothing(page: Page, context: BrowserContext) -> None:
    log_in(page, "ada")
    logged_in = cookie(context, "session_id")
    with page.expect_response(re.compile(r"/session/note$")) as answer:
        page.locator("#forged button").click()
    assert answer.value.status == 400
    expect(page.locator("h1")).to_have_text("Form refused (400)")
    expect(page.locator("#refused")).to_contain_text("CSRF token is missing or wrong")
    page.locator("#back").click()
    expect(page.locator("#user")).to_have_text("ada")
    expect(page.locator("#notes")).to_have_text("")
    assert cookie(context, "session_id") == logged_in


def test_the_rate_limit_page_reaches_429(page: Page) -> None:
    page.goto("/ratelimit")
    expect(page.locator("#algorithm")).to_have_text("fixed")
    rows = page.locator("#calls tr")
    # windows are aligned on the clock: one may end within the clicks
    for calls in range(1, 13):
        page.locator("#call").click()
        expect(rows).to_have_count(calls + 1)
        if "429" in rows.last.inner_text():
            break
    cells = rows.last.locator("td")
    expect(cells.nth(1)).to_have_text("429 Too Many Requests")
    assert 1 <= int(cells.nth(4).inner_text()) <= 10  # Retry-After
    expect(page.locator("#log")).to_contain_text("Retry-After:")
    assert calls >= 6  # five passed first


def test_the_perl_page_shows_its_sample_session(page: Page, context: BrowserContext) -> None:
    log_in(page, "ada")  # this application's own session, beside the Perl one
    page.goto("/perl")
    expect(page.locator("p.miss")).to_contain_text("No Perl session")
    page.locator("#perl-login").click()
    expect(page.locator("p.hit")).to_contain_text("Logged in on the Perl side as Zoë Perlmonger")
    expect(page.locator("#perl-session")).to_contain_text("_SESSION_ETIME")
    expect(page.locator("#perl-session")).to_contain_text("['admin', 'editor']")
    perl_cookie = cookie(context, "CGISESSID")
    assert perl_cookie is not None and len(perl_cookie) == 32
    page.goto("/session")
    expect(page.locator("#user")).to_have_text("ada")  # neither logged the other out
    page.goto("/perl")
    expect(page.locator("p.hit")).to_contain_text("Zoë Perlmonger")
