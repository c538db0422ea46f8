"""A transfer offered to a counsellor whose chat moves or ends before they answer: the card
goes from their console, with a word that says why (the same server and browser set-up as
test_console.py)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import BrowserContext

from tests.browser import test_console as console
from tests.browser.test_console import (
    Child,
    Colleague,
    go_on_duty,
    sign_in,
    strings,
    text_is,
    wait_until,
)
from tests.conftest import PASSWORD, ServerProcess

pytestmark = pytest.mark.browser

browser = console.browser
site = console.site
clean_floor = console.clean_floor
desk = console.desk
children = console.children

CARDS = "document.querySelectorAll('#offers-list .offer-card').length"


def _colleague_id(site: ServerProcess, username: str, name: str) -> str:
    with httpx.Client(base_url=site.url, timeout=10) as http:
        http.post("/api/login", json={"username": username, "password": PASSWORD})
        available = http.get("/api/staff/available").json()
    return str(next(c["id"] for c in available if c["name"] == name))


@pytest.mark.parametrize("lang", ["sq", "en"])
def test_an_offer_whose_chat_goes_back_to_the_queue_or_ends_leaves_the_card_with_a_word(
    lang: str, desk: BrowserContext, site: ServerProcess, children: Callable[..., Child]
) -> None:
    text = strings(lang)
    page = desk.new_page()
    errors = console.watch(page)
    sign_in(page, site, "besnik", lang)
    go_on_duty(page)
    ana = Colleague(site.url, "ana")
    besnik = _colleague_id(site, "ana", "Besnik Gashi")
    try:
        child = children("sq", age_band="13-15")
        ana.send(type="take")
        cid = ana.expect("assigned")["conversation_id"]
        for way_out, notice in (("queue", "notice_offer_requeued"), ("end", "notice_offer_ended")):
            ana.send(type="transfer", conversation_id=cid, to_user_id=besnik, note="Shkolla")
            ana.expect("transfer_pending", conversation_id=cid)
            wait_until(page, f"{CARDS} === 1")
            if way_out == "queue":
                ana.send(type="transfer", conversation_id=cid)
                ana.expect("released", conversation_id=cid)
            else:
                child.ws.send('{"type": "end"}')
                ana.expect("ended", conversation_id=cid)
            wait_until(page, f"{CARDS} === 0 && document.querySelector('#offers').hidden")
            text_is(page, "#alerts", text[notice])
            console.check_screen(page, f"offer-withdrawn-{way_out}-{lang}")
            if way_out == "queue":
                ana.send(type="take", conversation_id=cid)
                ana.expect("assigned", conversation_id=cid)
    finally:
        ana.close()
    assert errors == []
