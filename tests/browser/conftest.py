"""Shared pieces of the child's page tests: the browser, a server per module, a counsellor
driven over /ws/staff from a thread, and checks every screen goes through.

Each child test module starts one server process for all its tests (the settings differ
between modules: opening hours, allowed origins). Tests leave the floor as they found it:
their counsellors end their chats and go offline, and `tidy_floor` sweeps up after a
failed test so the next one does not inherit its queue.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright
from websockets.sync.client import ClientConnection, connect

from tests.conftest import IN_CI, PASSWORD, ROOT, ServerProcess, server_process

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
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
ZOOM_200: ViewportSize = {"width": 188, "height": 334}  # the phone at 200% zoom, in CSS pixels
EXIT_URL = "https://weather.example/today"
SHOTS = os.environ.get("ALO116_SCREENSHOTS")
# Flows beyond the main one run in Albanian; in English too when screenshots are wanted.
SHOT_LANGS = ["sq", "en"] if SHOTS else ["sq"]
STRINGS = ROOT / "web_client" / "i18n"


def strings(lang: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((STRINGS / f"{lang}.json").read_text(encoding="utf-8"))
    return loaded


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


# --- the browser and the server --------------------------------------------------------


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


@contextlib.contextmanager
def child_site(
    directory: Path, template: Path, users: dict[str, str], **env: str
) -> Iterator[ServerProcess]:
    """`alo116 serve` on a fresh SQLite file, with counsellors {username: display name}."""
    path = directory / "app.db"
    shutil.copy(template, path)
    server = server_process(f"sqlite+aiosqlite:///{path}", ALO116_QUICK_EXIT_URL=EXIT_URL, **env)
    for username, name in users.items():
        server.create_user(username, "counsellor", name)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def new_phone(browser: Browser) -> BrowserContext:
    """A phone with nothing in it: no storage, no history, the neutral exit site stubbed."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.route(f"{EXIT_URL}*", lambda route: route.fulfill(body="<title>Moti</title>"))
    return context


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:
    context = new_phone(browser)
    yield context
    context.close()


@pytest.fixture
def page(phone: BrowserContext) -> Iterator[Page]:
    page = phone.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert errors == [], "the page threw"


# --- a counsellor ------------------------------------------------------------------------


class Counsellor:
    """A counsellor on /ws/staff; frames are read on a thread into a queue."""

    def __init__(self, url: str, username: str = "ana") -> None:
        login = httpx.post(f"{url}/api/login", json={"username": username, "password": PASSWORD})
        login.raise_for_status()
        cookie = login.cookies["alo116_session"]
        self.url, self.cookie = url, cookie
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
        self.snapshot = self.expect("snapshot")
        self.id: str = self.snapshot["me"]["id"]

    def end(self, conversation_id: str, contact_type: str = "testing") -> None:
        """End a chat the way the console does: its contact is recorded first."""
        httpx.put(
            f"{self.url}/api/records/{conversation_id}",
            json={"contact_type": contact_type},
            cookies={"alo116_session": self.cookie},
        )
        self.ws.send(json.dumps({"type": "end", "conversation_id": conversation_id}))

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
        self.expect("me", status="available")

    def take(self, conversation_id: str | None = None) -> dict[str, Any]:
        if conversation_id:
            self.send(type="take", conversation_id=conversation_id)
        else:
            self.send(type="take")
        assigned = self.expect("assigned")
        self.conversation_id = assigned["conversation_id"]
        return assigned

    def waiting(self, mode: str = "chat", timeout: float = 10) -> dict[str, Any]:
        """The first queue item of this mode, once the queue shows one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queues = [f["items"] for f in self.seen if f["type"] == "queue"]
            latest: list[dict[str, Any]] = queues[-1] if queues else self.snapshot["queue"]
            for item in latest:
                if item.get("mode", "chat") == mode:
                    return item
            time.sleep(0.05)
        raise AssertionError(f"nobody waiting with mode {mode!r}")

    def say(self, body: str) -> None:
        self.send(type="send", client_id=str(uuid.uuid4()), body=body)

    def from_child(self) -> list[str]:
        return [f["body"] for f in self.seen if f["type"] == "msg" and f["from"] == "child"]

    def close(self) -> None:
        """End this counsellor's open chats and go offline, so the next test starts clean."""
        with contextlib.suppress(Exception):
            ended = {
                f.get("conversation_id") for f in self.seen if f["type"] in ("ended", "released")
            }
            mine = {f["conversation_id"] for f in self.seen if f["type"] == "assigned"}
            for cid in mine - ended:
                self.end(cid)
            self.send(type="status", value="offline")
            self.expect("me", timeout=5, status="offline")
        self.stack.close()
        self.reader.join(5)


def tidy_floor(url: str, username: str = "ana") -> None:
    """End whatever a failed test left behind: this counsellor's chats and the whole queue."""
    janitor = Counsellor(url, username)
    try:
        for chat in janitor.snapshot["chats"]:
            janitor.end(chat["conversation_id"])
        for item in janitor.snapshot["queue"]:
            janitor.send(type="take", conversation_id=item["conversation_id"])
            janitor.end(item["conversation_id"])
    finally:
        janitor.close()


# --- helpers -------------------------------------------------------------------------------


def wait_until(page: Page, expression: str, timeout: float = 15) -> None:
    """Poll in the page (wait_for_function would eval a string, which the CSP forbids)."""
    deadline = time.monotonic() + timeout
    helpers = "const strings = () => JSON.parse(document.getElementById('strings').textContent);"
    while time.monotonic() < deadline:
        if page.evaluate(f"() => {{ {helpers} return {expression}; }}"):
            return
        time.sleep(0.05)
    raise AssertionError(f"never true: {expression}")


def axe_violations(page: Page, iframes: bool = True) -> list[str]:
    # add_script_tag would be an inline script, which the page's CSP rightly blocks.
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(_axe_source() + "\n;0")
    found: list[str] = page.evaluate(
        """async (iframes) => (await axe.run(document, {iframes, resultTypes: ['violations']}))
             .violations.map(v => `${v.id}: ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)""",
        iframes,
    )
    return found


def check_screen(page: Page, name: str) -> None:
    """Zero axe-core violations, no sideways scroll at 200% zoom, and a screenshot."""
    page.evaluate("document.activeElement?.blur?.()")  # no stray focus ring in the pictures
    violations = axe_violations(page)
    assert violations == [], f"{name}: {violations}"
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        # The chat as the child sees it (the latest messages); any other screen whole.
        whole = visible_screen(page) != "v-chat"
        if whole:
            page.evaluate("scrollTo(0, 0)")
        page.screenshot(path=f"{SHOTS}/child-{name}.png", full_page=whole)
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
    """The conversation as the server holds it (not the page's own notices)."""
    return list(
        page.eval_on_selector_all("#log li:not(.local) p", "els => els.map(e => e.textContent)")
    )


def write(page: Page, body: str) -> None:
    page.fill("#text", body)
    page.keyboard.press("Enter")


def saved(page: Page) -> dict[str, Any]:
    stored: dict[str, Any] = json.loads(page.evaluate("sessionStorage.getItem('alo') || '{}'"))
    return stored
