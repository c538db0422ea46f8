"""embed.js on the helpline's own site: a page from another origin, under a strict CSP of
its own, adds the one-line snippet and gets a "Chat with us" button that opens the chat
(a panel on a desktop, a new tab on a phone). Nothing is fetched before the click.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.conftest import (
    DESKTOP,
    EXIT_URL,
    SHOT_LANGS,
    SHOTS,
    axe_violations,
    child_site,
    new_phone,
    visible_screen,
)
from tests.conftest import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.browser

HOST_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>ALO 116 111</title></head>
<body><main><h1>ALO 116 111</h1><p>Linja falas për fëmijët dhe të rinjtë.</p></main>
<script src="{chat}/chat/static/embed.js" defer></script>
</body></html>
"""
LABEL = {"sq": "Bisedo me ne", "en": "Chat with us"}
CLOSE = {"sq": "Mbyll dritaren e bisedës", "en": "Close the chat window"}
PANEL = "document.querySelector('body > div').shadowRoot.querySelector('[role=dialog]')"
FOCUSED = "document.querySelector('body > div').shadowRoot.activeElement?.tagName"


class HostSite:
    """The helpline's website on its own port, with a strict CSP that names the chat."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.chat = ""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lang = "en" if "lang=en" in self.path else "sq"
                body = HOST_PAGE.format(lang=lang, chat=site.chat).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header(
                    "Content-Security-Policy",
                    f"default-src 'none'; script-src {site.chat}; frame-src {site.chat}; "
                    "style-src 'self'; img-src 'self'",
                )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def host() -> Iterator[HostSite]:
    with HostSite() as site:
        yield site


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, host: HostSite
) -> Iterator[ServerProcess]:
    with child_site(
        tmp_path_factory.mktemp("embed"), sqlite_template, {}, ALO116_ALLOWED_ORIGINS=host.url
    ) as server:
        host.chat = server.url
        yield server


@pytest.fixture
def desk(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=DESKTOP)
    context.route(f"{EXIT_URL}*", lambda route: route.fulfill(body="<title>Moti</title>"))
    yield context
    context.close()


def open_host(page: Page, host: HostSite, lang: str) -> list[str]:
    """The host page, and the console errors it logs (a CSP refusal would be one)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{host.url}/?lang={lang}")
    page.wait_for_selector(f"a:has-text('{LABEL[lang]}')")
    return errors


def test_embed_js_is_small() -> None:
    assert (ROOT / "web_client/static/embed.js").stat().st_size <= 3 * 1024


@pytest.mark.parametrize("lang", SHOT_LANGS)
def test_on_a_desktop_the_button_opens_the_chat_in_a_panel(
    lang: str, desk: BrowserContext, host: HostSite, site: ServerProcess
) -> None:
    page = desk.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    errors = open_host(page, host, lang)
    # Before the click, the chat's server has served the script and nothing else.
    assert [u for u in asked if u.startswith(site.url)] == [f"{site.url}/chat/static/embed.js"]

    page.click(f"a:has-text('{LABEL[lang]}')")
    frame = page.frame_locator("iframe")
    frame.locator("#h-welcome").wait_for()
    # Styled although the host allows no inline style: element.style is not refused.
    assert page.evaluate(f"getComputedStyle({PANEL}).position") == "fixed"
    assert page.get_attribute("iframe", "src") == f"{site.url}/chat?lang={lang}"
    assert frame.locator("html").get_attribute("lang") == lang
    assert axe_violations(page, iframes=False) == []
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/child-embed-{lang}.png")

    # Closing the panel gives the focus back to the button.
    page.click(f"button[aria-label='{CLOSE[lang]}']")
    assert page.is_hidden("iframe")
    assert page.evaluate(FOCUSED) == "A"
    assert errors == [], errors  # no CSP refusal, no script error on the host
    assert desk.cookies() == []


def test_quick_exit_in_the_panel_leaves_the_whole_site(
    desk: BrowserContext, host: HostSite, site: ServerProcess
) -> None:
    page = desk.new_page()
    open_host(page, host, "sq")
    page.click(f"a:has-text('{LABEL['sq']}')")
    frame = page.frame_locator("iframe")
    frame.locator("#exit").click()
    page.wait_for_url(EXIT_URL)  # the top page, not just the panel


def test_quick_exit_in_the_panel_leaves_the_whole_site_before_the_script_has_loaded(
    desk: BrowserContext, host: HostSite, site: ServerProcess
) -> None:
    """On a slow phone the button is on screen before chat.js runs: as a plain link it
    must still take the whole window away, not load the exit page inside the panel."""
    page = desk.new_page()
    page.route("**/static/chat.js*", lambda route: route.abort())
    open_host(page, host, "sq")
    page.click(f"a:has-text('{LABEL['sq']}')")
    page.frame_locator("iframe").locator("#exit").click()
    page.wait_for_url(EXIT_URL)


def test_on_a_phone_the_button_opens_the_chat_in_a_new_tab(
    browser: Browser, host: HostSite, site: ServerProcess
) -> None:
    phone = new_phone(browser)
    try:
        page = phone.new_page()
        open_host(page, host, "sq")
        with phone.expect_page() as opened:
            page.click(f"a:has-text('{LABEL['sq']}')")
        chat = opened.value
        chat.wait_for_selector("#h-welcome")
        assert chat.url == f"{site.url}/chat?lang=sq"
        assert visible_screen(chat) == "v-welcome"
        assert page.is_hidden("iframe")  # no panel on a phone
    finally:
        phone.close()
