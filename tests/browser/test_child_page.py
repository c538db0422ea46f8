"""The child's page in Debian's Chromium on a phone-size screen, against the real server.

A counsellor is driven over /ws/staff from a thread, so each test reads as the child's
story: welcome, questions, waiting, chat, end; a network cut; a reload; quick exit.
Set ALO116_SCREENSHOTS=docs/screenshots to write child-*.png of every screen.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright
from websockets.sync.client import ClientConnection, connect

from tests.conftest import IN_CI, PASSWORD, ROOT, ServerProcess, server_process

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
PHONE: ViewportSize = {"width": 375, "height": 667}
ZOOM_200: ViewportSize = {"width": 188, "height": 334}  # the phone at 200% zoom, in CSS pixels
EXIT_URL = "https://weather.example/today"
BUDGET = 25 * 1024  # the whole first load, on the wire
SHOTS = os.environ.get("ALO116_SCREENSHOTS")


def _axe_source() -> str:
    """axe-core from npm (`./dev test` installs it): ALO116_AXE, or the repo's node_modules."""
    candidates = [
        os.environ.get("ALO116_AXE", ""),
        str(ROOT / "node_modules/axe-core/axe.min.js"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8")
    message = "axe-core not found: npm install axe-core (or set ALO116_AXE)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def site(tmp_path: Path, sqlite_template: Path) -> Iterator[ServerProcess]:
    path = tmp_path / "app.db"
    shutil.copy(sqlite_template, path)
    server = server_process(f"sqlite+aiosqlite:///{path}", ALO116_QUICK_EXIT_URL=EXIT_URL)
    server.create_user("ana", "counsellor", "Ana")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.route(f"{EXIT_URL}*", lambda route: route.fulfill(body="<title>Moti</title>"))
    yield context
    context.close()


@pytest.fixture
def page(phone: BrowserContext) -> Iterator[Page]:
    page = phone.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert errors == [], "the page threw"


class Counsellor:
    """A counsellor on /ws/staff; frames are read on a thread into a queue."""

    def __init__(self, url: str) -> None:
        login = httpx.post(f"{url}/api/login", json={"username": "ana", "password": PASSWORD})
        login.raise_for_status()
        cookie = login.cookies["alo116_session"]
        self.stack = contextlib.ExitStack()
        self.ws: ClientConnection = self.stack.enter_context(
            connect(
                url.replace("http://", "ws://") + "/ws/staff",
                additional_headers={"Cookie": f"alo116_session={cookie}"},
            )
        )
        self.seen: list[dict[str, Any]] = []
        self.frames: queue.Queue[dict[str, Any]] = queue.Queue()
        self.conversation_id = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.expect("snapshot")

    def _read(self) -> None:
        try:
            for raw in self.ws:
                frame = json.loads(raw)
                self.seen.append(frame)
                self.frames.put(frame)
        except Exception:  # the socket closed: the test is over
            return

    def send(self, **frame: Any) -> None:
        if self.conversation_id and frame["type"] not in ("status", "take"):
            frame.setdefault("conversation_id", self.conversation_id)
        self.ws.send(json.dumps(frame))

    def expect(self, kind: str, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.frames.get(timeout=left)
            except queue.Empty:
                break
            if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame
        raise AssertionError(f"no {kind} {fields} within {timeout}s")

    def go_on_duty(self) -> None:
        self.send(type="status", value="available")

    def take(self) -> None:
        self.send(type="take")
        self.conversation_id = self.expect("assigned")["conversation_id"]

    def say(self, body: str) -> None:
        self.send(type="send", client_id=str(uuid.uuid4()), body=body)

    def from_child(self) -> list[str]:
        return [f["body"] for f in self.seen if f["type"] == "msg" and f["from"] == "child"]

    def close(self) -> None:
        self.stack.close()
        self.reader.join(5)


@pytest.fixture
def counsellor(site: ServerProcess) -> Iterator[Callable[[], Counsellor]]:
    made: list[Counsellor] = []

    def make() -> Counsellor:
        made.append(Counsellor(site.url))
        return made[-1]

    yield make
    for c in made:
        c.close()


# --- helpers ---------------------------------------------------------------------------


def wait_until(page: Page, expression: str, timeout: float = 15) -> None:
    """Poll in the page (wait_for_function would eval a string, which the CSP forbids)."""
    deadline = time.monotonic() + timeout
    helpers = "const strings = () => JSON.parse(document.getElementById('strings').textContent);"
    while time.monotonic() < deadline:
        if page.evaluate(f"() => {{ {helpers} return {expression}; }}"):
            return
        time.sleep(0.05)
    raise AssertionError(f"never true: {expression}")


def check_screen(page: Page, name: str) -> None:
    """Zero axe-core violations, no sideways scroll at 200% zoom, and a screenshot."""
    # add_script_tag would be an inline script, which the page's CSP rightly blocks.
    page.evaluate(_axe_source() + "\n;0")
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
             .map(v => `${v.id}: ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)"""
    )
    assert violations == [], f"{name}: {violations}"
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/child-{name}.png")
    size = page.viewport_size
    page.set_viewport_size(ZOOM_200)
    try:
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= ZOOM_200["width"], f"{name}: {wide}px wide at 200% zoom"
    finally:
        assert size is not None
        page.set_viewport_size(size)


def text_of(page: Page, selector: str) -> str:
    return page.text_content(selector) or ""


def visible_screen(page: Page) -> str:
    return str(page.evaluate("document.querySelector('main > section:not([hidden])').id"))


def own_states(page: Page) -> list[str]:
    return list(page.eval_on_selector_all(".m.me", "els => els.map(e => e.dataset.st)"))


def transcript(page: Page) -> list[str]:
    return list(page.eval_on_selector_all("#log li p", "els => els.map(e => e.textContent)"))


def start_chat(page: Page, site: ServerProcess, counsellor: Counsellor) -> None:
    page.goto(f"{site.url}/chat")
    page.click("#start")
    page.click("#skip")
    counsellor.go_on_duty()
    counsellor.take()
    page.wait_for_selector("#v-chat:not([hidden])")


def write(page: Page, body: str) -> None:
    page.fill("#text", body)
    page.keyboard.press("Enter")


# --- the child's story -------------------------------------------------------------------

TEXT = {
    "sq": {"title": "Përshëndetje!", "nobody": "askush", "ana": "Si je sot?", "me": "Mirë."},
    "en": {"title": "Hi!", "nobody": "nobody", "ana": "How are you today?", "me": "Fine."},
}


@pytest.mark.parametrize("lang", ["sq", "en"])
def test_whole_flow(
    lang: str, page: Page, site: ServerProcess, counsellor: Callable[[], Counsellor]
) -> None:
    text = TEXT[lang]
    page.goto(f"{site.url}/chat?lang={lang}")
    assert page.evaluate("document.documentElement.lang") == lang
    assert text["title"] in text_of(page, "#h-welcome")
    check_screen(page, f"welcome-{lang}")

    page.click("#start")
    page.click("input[name=in_danger][value='1']")
    page.click("input[name=age_band][value='13-15']")
    page.click("input[name=topic][value='school']")
    assert page.is_visible("#q-danger")
    check_screen(page, f"questions-{lang}")
    page.click("#pre button.primary")

    # Nobody on duty: said honestly, with the phone line.
    page.wait_for_selector("#off:not([hidden])")
    assert text["nobody"] in text_of(page, "#off").lower()
    assert page.is_visible("#v-waiting a[href='tel:116111']")
    check_screen(page, f"waiting-nobody-{lang}")

    ana = counsellor()
    ana.go_on_duty()
    page.wait_for_selector("#off", state="hidden")
    wait_until(page, "document.querySelector('#pos').textContent === strings().wait_next")
    check_screen(page, f"waiting-{lang}")

    ana.take()
    queued = [f for f in ana.seen if f["type"] == "assigned"][-1]
    assert queued["pre_chat"] == {"in_danger": True, "age_band": "13-15", "topic": "school"}
    page.wait_for_selector("#v-chat:not([hidden])")
    assert "Ana" in text_of(page, "#h-chat")
    ana.say(text["ana"])
    page.wait_for_selector(".m.them")
    ana.expect("read")  # the child's page saw it
    write(page, text["me"])
    ana.expect("msg", body=text["me"])
    ana.send(type="typing", on=True)
    page.wait_for_selector("#typing:has-text('Ana')")
    ana.send(type="read", seq=2)
    wait_until(page, "document.querySelector('.m.me').dataset.st === 'read'")
    check_screen(page, f"chat-{lang}")

    page.click("#end")
    page.click("#confirm button[value=yes]")
    ana.expect("ended", reason="child_ended")
    page.wait_for_selector("#v-end:not([hidden])")
    page.click("input[name=helped][value='1']")
    page.click("input[name=rating][value='5']")
    check_screen(page, f"end-{lang}")
    page.click("#fb button.primary")
    wait_until(page, "document.querySelector('#fb-done').textContent.length > 0")
    assert page.is_hidden("#fb")

    page.click("#again")
    assert visible_screen(page) == "v-welcome"
    assert page.evaluate("document.querySelectorAll('#log li').length") == 0


def test_language_switch_keeps_the_chat_and_the_history_clean(
    page: Page, site: ServerProcess, counsellor: Callable[[], Counsellor]
) -> None:
    ana = counsellor()
    start_chat(page, site, ana)
    ana.say("Përshëndetje")
    page.wait_for_selector(".m.them")
    entries = page.evaluate("history.length")
    page.click("#lang")
    page.wait_for_url("**/chat?lang=en")
    page.wait_for_selector(".m.them")
    assert visible_screen(page) == "v-chat"
    assert page.evaluate("history.length") == entries  # replaced, not pushed


def test_messages_written_offline_arrive_once_and_in_order(
    phone: BrowserContext, page: Page, site: ServerProcess, counsellor: Callable[[], Counsellor]
) -> None:
    ana = counsellor()
    start_chat(page, site, ana)
    ana.say("Jam këtu.")
    page.wait_for_selector(".m.them")

    phone.set_offline(True)
    for n in range(1, 4):
        write(page, f"pa internet {n}")
    assert own_states(page) == ["sending"] * 3
    page.wait_for_selector("#conn:not(:empty)")
    phone.set_offline(False)

    wait_until(
        page, "[...document.querySelectorAll('.m.me')].every(e => e.dataset.st !== 'sending')"
    )
    time.sleep(0.5)  # anything doubled would have arrived by now
    assert ana.from_child() == ["pa internet 1", "pa internet 2", "pa internet 3"]
    assert transcript(page) == ["Jam këtu.", "pa internet 1", "pa internet 2", "pa internet 3"]
    assert json.loads(page.evaluate("sessionStorage.getItem('alo')"))["outbox"] == []


def test_reload_resumes_the_same_chat(
    page: Page, site: ServerProcess, counsellor: Callable[[], Counsellor]
) -> None:
    ana = counsellor()
    start_chat(page, site, ana)
    ana.say("Jam këtu.")
    write(page, "Faleminderit")
    ana.expect("msg", body="Faleminderit")
    page.reload()
    page.wait_for_selector(".m.me")
    wait_until(page, "document.querySelectorAll('#log li').length === 2")
    assert visible_screen(page) == "v-chat"
    assert transcript(page) == ["Jam këtu.", "Faleminderit"]
    ana.say("Ende këtu.")
    page.wait_for_selector("#log li:nth-child(3)")
    assert transcript(page)[-1] == "Ende këtu."


def test_too_long_message_is_stopped_before_sending(
    page: Page, site: ServerProcess, counsellor: Callable[[], Counsellor]
) -> None:
    ana = counsellor()
    start_chat(page, site, ana)
    page.fill("#text", "a" * 2001)
    assert page.is_disabled("#send")
    assert "1" in text_of(page, "#count")
    page.keyboard.press("Enter")
    time.sleep(0.5)
    assert ana.from_child() == []
    assert page.input_value("#text") == "a" * 2001  # nothing lost either
    page.fill("#text", "a" * 2000)
    assert page.is_enabled("#send")


@pytest.mark.parametrize("how", ["button", "escape"])
def test_quick_exit_leaves_no_trace(
    how: str,
    phone: BrowserContext,
    page: Page,
    site: ServerProcess,
    counsellor: Callable[[], Counsellor],
) -> None:
    ana = counsellor()
    start_chat(page, site, ana)
    write(page, "Dikush po vjen")
    ana.expect("msg", body="Dikush po vjen")
    beacons: list[str | None] = []
    page.on("request", lambda r: beacons.append(r.post_data) if "quick-exit" in r.url else None)
    token = json.loads(page.evaluate("sessionStorage.getItem('alo')"))["token"]

    if how == "button":
        page.click("#exit")
    else:
        for _ in range(3):
            page.keyboard.press("Escape")
    page.wait_for_url(EXIT_URL)
    assert beacons == [token]

    page.go_back()
    assert "/chat" not in page.url  # Back does not lead into the chat
    page.goto(f"{site.url}/healthz")  # the same tab, the chat's origin
    assert page.evaluate("sessionStorage.length") == 0
    assert page.evaluate("localStorage.length") == 0
    assert phone.cookies() == []


def test_first_load_fits_the_budget(page: Page, site: ServerProcess) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    wire: dict[str, int] = {}
    urls: dict[str, str] = {}
    cdp.on(
        "Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"])
    )
    cdp.on(
        "Network.loadingFinished",
        lambda e: wire.__setitem__(urls.get(e["requestId"], "?"), int(e["encodedDataLength"])),
    )
    page.goto(f"{site.url}/chat", wait_until="networkidle")
    total = sum(wire.values())
    assert {u.split("?")[0].rsplit("/", 1)[-1] for u in wire} == {
        "chat",
        "chat.css",
        "chat.js",
        "link.js",
        "store.js",
    }, wire
    assert total <= BUDGET, f"first load {total} bytes > {BUDGET}: {wire}"
    # Each asset once: the modulepreload URLs are the ones the imports ask for.
    assert len(wire) == 5


def test_first_screen_reads_before_any_script(browser: Browser, site: ServerProcess) -> None:
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{site.url}/chat")
        assert page.is_visible("#h-welcome")
        assert page.is_visible("#exit")
        assert page.get_attribute("#exit", "href") == EXIT_URL
    finally:
        context.close()
