"""Risk words (chat_server/risk_terms.py): what matches, and that the quick check for
"nothing here" never hides a match the term-by-term check would find."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chat_server.risk_terms import RiskTerms, normalise

TERMS = RiskTerms.from_file()
WORDS = sorted({w.rstrip("*") for t in TERMS._terms for w in t.words})


def slow(terms: RiskTerms, body: str) -> set[str]:
    words = normalise(body)
    return {t.text for t in terms._terms if t.found_in(words)}


def test_terms_match_without_diacritics_or_case() -> None:
    match = TERMS.match("Sot DUA TË VDES, më fal")
    assert match is not None
    assert match.level == "imminent"
    assert match.terms == ("dua te vdes",)


def test_a_starred_word_matches_every_word_it_begins() -> None:
    match = TERMS.match("kam pirë ilaçe shumë")
    assert match is not None and "kam pire ilac*" in match.terms


def test_a_term_is_never_found_inside_another_word() -> None:
    assert TERMS.match("dua te vdesim") is None  # "vdes" is exact, not a prefix
    assert TERMS.match("sot shkova ne shkolle") is None
    assert TERMS.match("") is None


def test_the_highest_level_of_several_wins() -> None:
    terms = RiskTerms([("i trishtuar", "low"), ("vras veten", "imminent")])
    match = terms.match("jam i trishtuar dhe dua te vras veten")
    assert match is not None
    assert match.level == "imminent"
    assert set(match.terms) == {"i trishtuar", "vras veten"}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(WORDS),
            st.sampled_from(WORDS).map(lambda w: w + "e"),
            st.sampled_from(WORDS).map(str.upper),
            st.text(alphabet="abcëçde\u2019' .,!?", max_size=8),
        ),
        max_size=12,
    )
)
def test_the_quick_check_agrees_with_the_term_by_term_check(parts: list[str]) -> None:
    body = " ".join(parts)
    match = TERMS.match(body)
    assert (set(match.terms) if match else set()) == slow(TERMS, body)
