"""Risk words in a child's messages, matched on the server for the counsellor's eyes only.

Pure: a list of terms in, matches out. A match highlights the message in the console
and suggests a risk level; the counsellor decides, and nothing reaches the child.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LEVEL_ORDER = {"none": 0, "low": 1, "high": 2, "imminent": 3}
DEFAULT_TERMS = Path(__file__).resolve().parent.parent / "db" / "data" / "risk_terms.v1.json"

_WORD = re.compile(r"[a-z0-9']+")


def normalise(text: str) -> list[str]:
    """Lower case, no diacritics (ë is e, ç is c), split into words."""
    folded = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return _WORD.findall(plain.replace("\u2019", "'"))


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    level: str
    words: tuple[str, ...]

    def found_in(self, words: Sequence[str]) -> bool:
        n = len(self.words)
        return any(
            all(
                _matches(pattern, word)
                for pattern, word in zip(self.words, words[i : i + n], strict=True)
            )
            for i in range(len(words) - n + 1)
        )


def _matches(pattern: str, word: str) -> bool:
    return word.startswith(pattern[:-1]) if pattern.endswith("*") else word == pattern


@dataclass(frozen=True, slots=True)
class Match:
    level: str
    terms: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {"level": self.level, "terms": list(self.terms)}


class RiskTerms:
    def __init__(self, terms: Iterable[tuple[str, str]]) -> None:
        self._terms: list[Term] = []
        for text, level in terms:
            if level not in LEVEL_ORDER or level == "none":
                raise ValueError(f"risk term {text!r} has an unknown level {level!r}")
            patterns = _patterns(text)
            if not patterns:
                raise ValueError(f"risk term {text!r} has no words")
            self._terms.append(Term(text, level, patterns))
        # Most messages match nothing: one regular expression over the message's words,
        # joined by single spaces, says so at once; only a hit checks term by term.
        self._any = re.compile(
            "(?<= )(?:" + "|".join(_regex(t.words) for t in self._terms) + ")(?= )"
        )

    @classmethod
    def from_file(cls, path: Path = DEFAULT_TERMS) -> RiskTerms:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls((t["term"], t["level"]) for t in data["terms"])

    def match(self, body: str) -> Match | None:
        words = normalise(body)
        if not self._terms or not self._any.search(f" {' '.join(words)} "):
            return None
        found = [t for t in self._terms if t.found_in(words)]
        if not found:
            return None
        level = max((t.level for t in found), key=LEVEL_ORDER.__getitem__)
        return Match(level, tuple(dict.fromkeys(t.text for t in found)))


def _regex(patterns: Sequence[str]) -> str:
    """A term's words in a row; a starred word matches any word it begins."""
    return " ".join(
        re.escape(p[:-1]) + "[a-z0-9']*" if p.endswith("*") else re.escape(p) for p in patterns
    )


def _patterns(text: str) -> tuple[str, ...]:
    """Each word of a term, normalised; a trailing * on a word keeps its meaning."""
    patterns = []
    for raw in text.split():
        star = raw.endswith("*")
        words = normalise(raw.rstrip("*"))
        if not words:
            continue
        patterns.extend(words[:-1])
        patterns.append(words[-1] + ("*" if star else ""))
    return tuple(patterns)
