"""Out of hours: the honest closed message, leaving a message with a return code, and
coming back with the code on another device to read the counsellor's answer.

The server's opening hours exclude the moment the tests run, so every child sees the
chat as closed. Wrong codes are counted per address for the whole server, so the test
that spends them all runs last.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import (
    SHOT_LANGS,
    Counsellor,
    check_screen,
    child_site,
    new_phone,
    saved,
    strings,
    text_of,
    tidy_floor,
    transcript,
    visible_screen,
    wait_until,
    write,
)
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

ZONE = "Europe/Tirane"


def hours_that_exclude_now() -> str:
    """One hour, starting six hours from now in Tirana: the chat is closed while we test."""
    start = datetime.now(ZoneInfo(ZONE)) + timedelta(hours=6)
    return f"{start:%H}:00-{(start + timedelta(hours=1)):%H}:00"


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[ServerProcess]:
    with child_site(
        tmp_path_factory.mktemp("closed"),
        sqlite_template,
        {"ana": "Ana"},
        ALO116_OPENING_HOURS=hours_that_exclude_now(),
        ALO116_TIMEZONE=ZONE,
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def clean_floor(site: ServerProcess) -> Iterator[None]:
    yield
    tidy_floor(site.url)


def closed_welcome(page: Page, site: ServerProcess, lang: str) -> None:
    page.goto(f"{site.url}/chat?lang={lang}")
    page.wait_for_selector("#w-off:not([hidden])")


@pytest.mark.parametrize("lang", SHOT_LANGS)
def test_out_of_hours_says_so_and_offers_the_phone_line(
    lang: str, page: Page, site: ServerProcess
) -> None:
    text = strings(lang)
    closed_welcome(page, site, lang)
    assert text_of(page, "#w-off-h") == text["w_closed_h"]
    assert "116 111" in text_of(page, "#w-off-p")
    assert page.is_visible("#w-off a[href='tel:116111']")
    assert page.is_visible("#w-more a[href='tel:112']")
    assert page.is_hidden("#start")  # nobody will come: waiting is not offered
    assert page.is_visible("#leave")
    assert page.is_visible("#have-code")
    check_screen(page, f"welcome-closed-{lang}")


@pytest.mark.parametrize("lang", SHOT_LANGS)
def test_a_left_message_is_answered_and_read_back_with_the_code(
    lang: str, browser: Browser, page: Page, site: ServerProcess
) -> None:
    text = strings(lang)
    closed_welcome(page, site, lang)
    page.click("#leave")
    page.click("input[name=age_band][value='10-12']")
    page.click("#pre button.primary")
    page.wait_for_selector("#v-message:not([hidden]) #composer")
    check_screen(page, f"message-{lang}")

    write(page, "Në shkollë më ngacmojnë çdo ditë.")
    page.wait_for_selector("#v-code:not([hidden])")  # the code comes once the message is stored
    code = text_of(page, "#code")
    assert re.fullmatch(r"[a-z]+-[a-z]+-[a-z]+-\d\d", code), code
    assert page.is_visible("#code-sent")
    page.click("#copy")
    wait_until(page, "document.getElementById('copied').textContent !== ''")
    assert text_of(page, "#copied") in (text["copied"], text["copy_failed"])
    check_screen(page, f"code-{lang}")

    page.click("#code-ok")
    assert visible_screen(page) == "v-message"
    assert text_of(page, "#m-status") == text["m_saved"]
    write(page, "Edhe në autobus.")
    wait_until(page, "[...document.querySelectorAll('.m.me')].every(e => e.dataset.st === 'sent')")
    check_screen(page, f"message-saved-{lang}")
    page.click("#m-done")
    page.click("#confirm button[value=yes]")
    page.wait_for_selector("#v-welcome:not([hidden])")
    assert "code" not in saved(page)  # this phone keeps nothing of it

    # Next morning a counsellor takes the message from the queue and answers.
    ana = Counsellor(site.url)
    try:
        ana.go_on_duty()
        item = ana.waiting(mode="message")
        assert item["pre_chat"] == {"age_band": "10-12"}
        ana.take(item["conversation_id"])
        ana.say("Faleminderit që na shkrove. Nuk është faji yt.")
        ana.expect("ack")

        # Another device: the code, typed in capitals with spaces, opens the conversation.
        other = new_phone(browser)
        try:
            back = other.new_page()
            back.goto(f"{site.url}/chat?lang={lang}")
            back.click("#have-code")
            check_screen(back, f"back-{lang}")
            back.fill("#back-code", code.upper().replace("-", " "))
            back.click("#back-go")
            back.wait_for_selector("#v-chat:not([hidden]) .m.them")
            assert transcript(back) == [
                "Në shkollë më ngacmojnë çdo ditë.",
                "Edhe në autobus.",
                "Faleminderit që na shkrove. Nuk është faji yt.",
            ]
            assert "Ana" in text_of(back, "#h-chat")

            # The counsellor closes it: the child can still read the answer, then go on.
            ana.end(ana.conversation_id)
            back.wait_for_selector("#over:not([hidden])")
            assert back.is_hidden("#composer")
            assert text_of(back, "#over-why") == text["ended_counsellor_ended"]
            check_screen(back, f"chat-ended-{lang}")
            back.click("#over-ok")
            assert visible_screen(back) == "v-end"
        finally:
            other.close()
    finally:
        ana.close()


def test_a_wrong_code_says_only_that_and_guessing_is_stopped(
    page: Page, site: ServerProcess
) -> None:
    """Runs last in this module: it uses up this address's wrong guesses."""
    text = strings("sq")
    closed_welcome(page, site, "sq")
    page.click("#have-code")
    page.fill("#back-code", "ARRA BLETA DEGA 00")
    page.click("#back-go")
    wait_until(page, f"document.getElementById('back-err').textContent === {text['back_wrong']!r}")
    assert visible_screen(page) == "v-back"
    assert page.is_enabled("#back-go")
    check_screen(page, "back-wrong-sq")
    if "en" in SHOT_LANGS:
        page.goto(f"{site.url}/chat?lang=en")  # the same tab: still on the code screen
        page.fill("#back-code", "not the right code 11")
        page.click("#back-go")
        wait_until(page, "document.getElementById('back-err').textContent !== ''")
        check_screen(page, "back-wrong-en")
        page.goto(f"{site.url}/chat?lang=sq")

    # The page still works after a wrong code: it is connected and can start a chat.
    wait_until(page, "document.getElementById('conn').textContent === ''")

    for _ in range(10):
        page.fill("#back-code", "ARRA BLETA DEGA 00")
        page.click("#back-go")
        wait_until(page, "!document.getElementById('back-go').disabled")
        if text_of(page, "#back-err") == text["back_many"]:
            break
    assert text_of(page, "#back-err") == text["back_many"]
