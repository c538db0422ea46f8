"""The child's page in Debian's Chromium on a phone-size screen, against the real server.

A counsellor is driven over /ws/staff from a thread, so each test reads as the child's
story: welcome, questions, waiting, chat, end; writing while waiting; a transfer; a
network cut; a reload; quick exit. One server serves the whole module.
Set ALO116_SCREENSHOTS=docs/screenshots to write child-*.png of every screen.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.conftest import (
    EXIT_URL,
    PHONE,
    SHOT_LANGS,
    Counsellor,
    check_screen,
    child_site,
    own_states,
    strings,
    text_of,
    tidy_floor,
    transcript,
    visible_screen,
    wait_until,
    write,
)
from tests.conftest import ROOT, ServerProcess

pytestmark = pytest.mark.browser

BUDGET = 25 * 1024  # the whole first load, on the wire


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[ServerProcess]:
    with child_site(
        tmp_path_factory.mktemp("child"), sqlite_template, {"ana": "Ana", "besa": "Besa"}
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def clean_floor(site: ServerProcess) -> Iterator[None]:
    yield
    tidy_floor(site.url)


@pytest.fixture
def counsellor(site: ServerProcess) -> Iterator[Callable[..., Counsellor]]:
    made: list[Counsellor] = []

    def make(username: str = "ana") -> Counsellor:
        made.append(Counsellor(site.url, username))
        return made[-1]

    yield make
    for c in made:
        c.close()


def start_chat(page: Page, site: ServerProcess, counsellor: Counsellor) -> None:
    page.goto(f"{site.url}/chat")
    page.click("#start")
    page.click("#skip")
    counsellor.go_on_duty()
    counsellor.take()
    page.wait_for_selector("#v-chat:not([hidden])")


# --- the child's story -------------------------------------------------------------------

TEXT = {
    "sq": {"title": "Përshëndetje!", "ana": "Si je sot?", "me": "Mirë."},
    "en": {"title": "Hi!", "ana": "How are you today?", "me": "Fine."},
}


@pytest.mark.parametrize("lang", ["sq", "en"])
def test_whole_flow(
    lang: str, page: Page, site: ServerProcess, counsellor: Callable[..., Counsellor]
) -> None:
    text = TEXT[lang]
    ana = counsellor()
    ana.go_on_duty()
    page.goto(f"{site.url}/chat?lang={lang}")
    assert page.evaluate("document.documentElement.lang") == lang
    assert text["title"] in text_of(page, "#h-welcome")
    wait_until(page, "document.getElementById('conn').textContent === ''")
    assert page.is_hidden("#w-off")  # someone can answer: no warning
    check_screen(page, f"welcome-{lang}")

    page.click("#start")
    page.click("input[name=in_danger][value='1']")
    page.click("input[name=age_band][value='13-15']")
    page.click("input[name=topic][value='school']")
    assert page.is_visible("#q-danger")
    check_screen(page, f"questions-{lang}")

    # Nobody on duty any more: said honestly, with the phone line.
    ana.send(type="status", value="break")
    ana.expect("me", status="break")
    page.click("#pre button.primary")
    page.wait_for_selector("#off:not([hidden])")
    assert text_of(page, "#off-h") == strings(lang)["off_nobody_online_h"]
    assert page.is_visible("#v-waiting a[href='tel:116111']")
    assert page.is_visible("#to-message")  # nothing written yet: a message is offered
    check_screen(page, f"waiting-nobody-{lang}")

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


@pytest.mark.parametrize("lang", SHOT_LANGS)
def test_writing_while_waiting_reaches_the_counsellor_once(
    lang: str, page: Page, site: ServerProcess, counsellor: Callable[..., Counsellor]
) -> None:
    text = strings(lang)
    page.goto(f"{site.url}/chat?lang={lang}")
    page.wait_for_selector("#w-off:not([hidden])")  # nobody on duty, said before the questions
    assert text_of(page, "#w-off-h") == text["w_nobody_online_h"]
    assert text_of(page, "#start") == text["start_anyway"]
    assert page.is_visible("#w-off a[href='tel:116111']")
    check_screen(page, f"welcome-nobody-{lang}")

    page.click("#start")
    page.click("#skip")
    page.wait_for_selector("#v-waiting #composer")
    write(page, "A je aty?")
    write(page, "Kam nevojë të flas me dikë.")
    wait_until(page, "[...document.querySelectorAll('.m.me')].every(e => e.dataset.st === 'sent')")
    assert page.is_hidden("#to-message")  # written already: stays a chat
    check_screen(page, f"waiting-writing-{lang}")

    ana = counsellor()
    ana.go_on_duty()
    assigned = ana.take()
    assert assigned["last_seq"] == 2
    page.wait_for_selector("#v-chat:not([hidden])")
    ana.say("Po, jam këtu. Të lexova.")
    page.wait_for_selector(".m.them")
    time.sleep(0.5)  # anything doubled would have arrived by now
    assert ana.from_child() == ["A je aty?", "Kam nevojë të flas me dikë."]
    assert transcript(page) == [
        "A je aty?",
        "Kam nevojë të flas me dikë.",
        "Po, jam këtu. Të lexova.",
    ]

    # A code to come back later, from the chat itself.
    page.click("#get-code")
    page.wait_for_selector("#v-code:not([hidden])")
    assert re.fullmatch(r"[a-z]+-[a-z]+-[a-z]+-\d\d", text_of(page, "#code"))
    assert page.is_hidden("#code-sent")  # nothing was "sent": this is a chat
    page.click("#code-ok")
    assert visible_screen(page) == "v-chat"


def test_a_waiting_child_can_leave_a_message_instead(
    page: Page, site: ServerProcess, counsellor: Callable[..., Counsellor]
) -> None:
    page.goto(f"{site.url}/chat")
    page.click("#start")
    page.click("input[name=topic][value='family']")
    page.click("#pre button.primary")
    page.wait_for_selector("#to-message:not([hidden])")  # nobody on duty, nothing written
    page.click("#to-message")
    page.wait_for_selector("#v-message:not([hidden])")
    write(page, "Në shtëpi ka shumë zhurmë.")
    page.wait_for_selector("#v-code:not([hidden])")

    # One left message in the queue, with the answers; the chat it replaced is gone.
    ana = counsellor()
    item = ana.waiting(mode="message")
    assert item["pre_chat"] == {"topic": "family"}
    assert len(ana.snapshot["queue"]) == 1


@pytest.mark.parametrize("lang", SHOT_LANGS)
def test_a_transfer_says_who_the_child_is_talking_with(
    lang: str, page: Page, site: ServerProcess, counsellor: Callable[..., Counsellor]
) -> None:
    text = strings(lang)
    ana, besa = counsellor(), counsellor("besa")
    page.goto(f"{site.url}/chat?lang={lang}")
    page.click("#start")
    page.click("#skip")
    ana.go_on_duty()
    ana.take()
    page.wait_for_selector("#v-chat:not([hidden])")
    ana.say("Përshëndetje, jam Ana.")
    page.wait_for_selector(".m.them")

    # Back to the queue: "someone else", not the first-time waiting text.
    ana.send(type="transfer")
    page.wait_for_selector("#v-waiting:not([hidden])")
    assert text_of(page, "#h-waiting") == text["wait_again_title"]
    assert page.is_visible("#w-again")
    assert transcript(page) == ["Përshëndetje, jam Ana."]  # the conversation is still there
    check_screen(page, f"waiting-again-{lang}")

    besa.go_on_duty()
    besa.take()
    page.wait_for_selector("#v-chat:not([hidden])")
    now_with = text["now_with"].replace("{name}", "Besa")
    page.wait_for_selector(f"#log .local:has-text('{now_with}')")
    assert "Besa" in text_of(page, "#h-chat")

    # To a colleague directly: the name changes while the chat stays open.
    ana.go_on_duty()
    besa.send(type="transfer", to_user_id=ana.id)
    ana.expect("transfer_offer")
    ana.send(type="transfer_accept", conversation_id=besa.conversation_id)
    ana.conversation_id = besa.conversation_id
    now_with = text["now_with"].replace("{name}", "Ana")
    page.wait_for_selector(f"#log .local:has-text('{now_with}')")
    assert "Ana" in text_of(page, "#h-chat")
    assert visible_screen(page) == "v-chat"
    check_screen(page, f"chat-transferred-{lang}")


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


def test_every_string_exists_in_both_languages() -> None:
    """The page takes every word from the language files: none missing, none in one only."""
    sq, en = strings("sq"), strings("en")
    assert sq.keys() == en.keys()
    assert [k for k in sq if hasattr(dict, k)] == []  # Jinja would find the dict's method
    web = ROOT / "web_client"
    used = set(re.findall(r"\bs\.(\w+)", (web / "templates/chat.html").read_text()))
    script = (web / "static/chat.js").read_text()
    used |= set(re.findall(r"\bt\('(\w+)'", script))
    # Keys built at run time: reasons and statuses the server sends.
    for reason in ("closed", "nobody_online", "busy"):
        used |= {f"w_{reason}_h", f"w_{reason}", f"off_{reason}_h", f"off_{reason}"}
    for why in ("child_ended", "counsellor_ended", "inactive", "abandoned", "quick_exit"):
        used.add(f"ended_{why}")
    for st in ("sending", "sent", "read", "failed"):
        used.add(f"st_{st}")
    missing = sorted(k for k in used if k not in sq)
    assert missing == [], missing
