"""The supervisor's floor in Debian's Chromium at 1366x768, against the real server.

Children and counsellors are driven over the protocol from threads; the floor must show
the same numbers the server holds, and a supervisor monitors a chat, whispers to its
counsellor and acknowledges an alert, with the keyboard-reachable controls a shift uses.
Set ALO116_SCREENSHOTS=docs/screenshots to write floor.png, floor-en.png, floor-monitor.png
and audit.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize
from websockets.sync.client import connect

from chat_server import accounts
from db.engine import create_engine, session_factory
from tests.browser.conftest import SHOTS, Counsellor, axe_violations
from tests.conftest import PASSWORD, ROOT, ServerProcess, server_process

pytestmark = pytest.mark.browser

DESKTOP: ViewportSize = {"width": 1366, "height": 768}
STRINGS = ROOT / "counsellor_console" / "i18n"


def strings(lang: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((STRINGS / f"floor_{lang}.json").read_text("utf-8"))
    return loaded


class Child:
    """A child on /ws/child who has joined the queue; frames are read on a thread."""

    def __init__(self, url: str, lang: str = "sq", **pre_chat: Any) -> None:
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(url.replace("http://", "ws://") + "/ws/child"))
        self.frames: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.ws.send(json.dumps({"type": "hello", "v": 1, "lang": lang}))
        self.ws.send(json.dumps({"type": "start", "pre_chat": pre_chat}))
        self.expect("state", status="queued")

    def _read(self) -> None:
        with contextlib.suppress(Exception):
            for raw in self.ws:
                frame = json.loads(raw)
                self.seen.append(frame)
                self.frames.put(frame)

    def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(queue.Empty):
                frame = self.frames.get(timeout=left)
                if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                    return frame
        raise AssertionError(f"no {kind} {fields}")

    def say(self, body: str) -> None:
        self.ws.send(json.dumps({"type": "send", "client_id": body[:32], "body": body}))
        self.expect("ack")

    def close(self) -> None:
        self.stack.close()


STAFF = (
    ("ana", "counsellor", "Ana Hoxha"),
    ("besnik", "counsellor", "Besnik Kola"),
    ("drita", "supervisor", "Drita Leka"),
    ("arben", "admin", "Arben Dervishi"),
)


async def _create_staff(database_url: str) -> None:
    """Here rather than by four `alo116 create-user` runs, which cost seconds each."""
    engine = create_engine(database_url)
    try:
        for username, role, name in STAFF:
            await accounts.create_user(
                session_factory(engine),
                username=username,
                password=PASSWORD,
                role=role,
                display_name=name,
            )
    finally:
        await engine.dispose()


@pytest.fixture
def site(tmp_path: Path, sqlite_template: Path) -> Iterator[ServerProcess]:
    path = tmp_path / "app.db"
    shutil.copy(sqlite_template, path)
    database_url = f"sqlite+aiosqlite:///{path}"
    # Playwright's loop is running on this thread; the accounts are made on another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _create_staff(database_url)).result()
    server = server_process(
        database_url,
        ALO116_HEARTBEAT_INTERVAL_S="1",
        ALO116_SWEEP_INTERVAL_S="0.3",
        ALO116_UNANSWERED_ALERT_S="2",
        ALO116_WAIT_ALERT_S="3600",
    )
    server.start()
    yield server
    server.stop()


def signed_in(browser: Browser, url: str, username: str, errors: list[str]) -> Page:
    login = httpx.post(f"{url}/api/login", json={"username": username, "password": PASSWORD})
    login.raise_for_status()
    context = browser.new_context(viewport=DESKTOP)
    context.add_cookies(
        [{"name": "alo116_session", "value": login.cookies["alo116_session"], "url": url}]
    )
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def wait_until(page: Page, expression: str, timeout: float = 15) -> None:
    """Poll in the page (wait_for_function would eval a string, which the CSP forbids)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(f"() => {expression}"):
            return
        time.sleep(0.05)
    raise AssertionError(f"never true: {expression}")


def numbers(page: Page) -> dict[str, str]:
    found: dict[str, str] = page.evaluate(
        """() => Object.fromEntries(['queue', 'chats', 'staff', 'free', 'alerts']
              .map((k) => [k, document.getElementById('n-' + k).textContent]))"""
    )
    return found


def rows(page: Page, body: str) -> list[str]:
    return list(page.eval_on_selector_all(f"#{body} tr", "rs => rs.map(r => r.innerText)"))


def check(page: Page, name: str) -> None:
    page.evaluate("document.activeElement?.blur?.()")
    violations = axe_violations(page, iframes=False)
    assert violations == [], f"{name}: {violations}"
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}.png")


def test_a_supervisor_runs_the_floor(site: ServerProcess, browser: Browser) -> None:
    url = site.url
    sq, en = strings("sq"), strings("en")
    danger = Child(url, in_danger=True, age_band="13-15", topic="violence")
    school = Child(url, topic="school", age_band="10-12")
    feelings = Child(url, "en", topic="feelings", age_band="16-17")
    waiting = Child(url, topic="family", gender="girl")
    ana, besnik = Counsellor(url, "ana"), Counsellor(url, "besnik")
    try:
        ana.go_on_duty()
        besnik.go_on_duty()
        in_danger = ana.take()["conversation_id"]  # the child in danger is served first
        ana.take()
        besnik.take()
        ana.send(type="risk", conversation_id=in_danger, level="high")
        danger.say("Babai më rrah kur pi. Kam frikë të shkoj në shtëpi sonte.")
        ana.send(
            type="send",
            conversation_id=in_danger,
            client_id="r1",
            body="Je në vend të sigurt tani?",
        )
        danger.expect("msg", seq=2)
        school.say("Më tallin në shkollë çdo ditë.")  # and nobody answers: an alert in 2 s

        errors: list[str] = []
        page = signed_in(browser, url, "drita", errors)
        page.goto(f"{url}/console/floor")
        # The floor equals the server's state: one child waiting, three chats, two
        # counsellors (2/3 and 1/3), three places free, three alerts open.
        wait_until(page, "document.getElementById('n-alerts').textContent === '3'")
        assert numbers(page) == {
            "queue": "1",
            "chats": "3",
            "staff": "2",
            "free": "3",
            "alerts": "3",
        }
        staff = rows(page, "staff-body")
        assert [r.splitlines()[0].strip() for r in staff] == ["Ana Hoxha", "Besnik Kola"]
        assert all(sq["staff_online"] in r for r in staff)
        assert "2 / 3" in staff[0] and "1 / 3" in staff[1]
        assert sq["topic.family"] in rows(page, "queue-body")[0]
        chats = page.eval_on_selector_all("#chats-body tr", "rs => rs.map(r => r.dataset.key)")
        assert chats[0] == in_danger  # the most urgent first
        assert sq["risk.high"] in rows(page, "chats-body")[0]
        kinds = page.eval_on_selector_all("#alerts-list li", "ls => ls.map(l => l.dataset.kind)")
        assert sorted(kinds) == ["in_danger", "risk", "unanswered"]
        assert page.title().startswith("(3) ")
        check(page, "floor")

        page.goto(f"{url}/console/floor?lang=en")
        wait_until(page, "document.getElementById('n-alerts').textContent === '3'")
        assert en["alert.in_danger"] in page.inner_text("#alerts-list")
        check(page, "floor-en")

        # Monitor the chat of the child in danger, from the keyboard: the history shows.
        page.focus(f'#chats-body tr[data-key="{in_danger}"] button[data-action="monitor"]')
        page.keyboard.press("Enter")
        wait_until(page, "document.querySelectorAll('#monitor-log li').length === 2")
        log = page.inner_text("#monitor-log")
        assert "Babai më rrah" in log and "Je në vend të sigurt tani?" in log
        assert page.evaluate("document.activeElement.id") == "monitor-heading"
        # Live: the conversation goes on and the panel follows it.
        danger.say("Jam te shoqja ime tani.")
        ana.send(type="send", conversation_id=in_danger, client_id="r2", body="Mirë. Qëndro aty.")
        wait_until(page, "document.querySelectorAll('#monitor-log li').length === 4")

        # A whisper reaches the counsellor only, and shows in the panel as a whisper.
        page.fill("#whisper-text", "Pyete nëse ka një të rritur të sigurt pranë.")
        page.keyboard.press("Enter")
        whisper = ana.expect("whisper", conversation_id=in_danger)
        assert whisper["body"] == "Pyete nëse ka një të rritur të sigurt pranë."
        assert whisper["from"]["name"] == "Drita Leka"
        wait_until(page, "document.querySelector('#monitor-log li.whisper') !== null")
        assert page.input_value("#whisper-text") == ""
        assert all(f["type"] not in ("whisper", "monitored") for f in danger.seen)
        check(page, "floor-monitor")

        # Escape closes the panel and gives the focus back to the button that opened it.
        page.keyboard.press("Escape")
        wait_until(page, "document.getElementById('monitor').hidden")
        assert page.evaluate("document.activeElement.dataset.action") == "monitor"

        # One click acknowledges the alert; it stays gone after the next refresh.
        page.click('#alerts-list li[data-kind="in_danger"] button[data-action="ack"]')
        wait_until(page, "document.getElementById('n-alerts').textContent === '2'")
        time.sleep(1.5)  # a heartbeat's floor frame
        assert numbers(page)["alerts"] == "2"
        assert page.query_selector('#alerts-list li[data-kind="in_danger"]') is None
        page.context.close()

        # A counsellor who tries the floor is refused, and that too is on the record.
        wrong = httpx.post(f"{url}/api/login", json={"username": "ana", "password": "not it"})
        assert wrong.status_code == 401
        cookie = httpx.post(f"{url}/api/login", json={"username": "ana", "password": PASSWORD})
        refused = httpx.get(f"{url}/console/floor", cookies=cookie.cookies)
        assert refused.status_code == 403

        # The administrator finds all of it in the audit log.
        audit = signed_in(browser, url, "arben", errors)
        audit.goto(f"{url}/console/audit?lang=en&actor=drita")
        table = audit.inner_text(".audit-table")
        for words in (
            "Started silently monitoring a chat",
            "Whispered to the counsellor",
            "Stopped monitoring a chat",
            "Acknowledged an alert",
            "Signed in",
        ):
            assert words in table
        audit.goto(f"{url}/console/audit")
        flagged = audit.eval_on_selector_all(
            ".audit-table tr.flagged code", "cs => cs.map(c => c.textContent)"
        )
        assert flagged == ["floor.view.denied", "auth.login_failed"]
        check(audit, "audit")
        audit.context.close()
        assert errors == [], "a page threw"
    finally:
        for person in (ana, besnik):
            person.close()
        for child in (danger, school, feelings, waiting):
            child.close()
