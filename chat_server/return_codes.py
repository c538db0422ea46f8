"""Return codes: a few short words a child can note down to come back to a conversation.

Only a keyed hash of a code is stored. Codes are three words from a list of plain
ASCII Albanian words and a two-digit number: about 2^28 possibilities, which together
with per-address rate limits (kept in memory only) makes guessing hopeless.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import unicodedata
from collections import OrderedDict, deque

# Short, common, friendly nouns without ë or ç, so any keyboard can type them.
WORDS = (
    "arra",
    "ari",
    "bari",
    "bleta",
    "bora",
    "buka",
    "burimi",
    "breshka",
    "dardha",
    "dega",
    "delja",
    "dera",
    "det",
    "dhia",
    "diell",
    "dita",
    "dimri",
    "djathi",
    "dora",
    "dru",
    "era",
    "fara",
    "fiku",
    "fleta",
    "flutura",
    "fusha",
    "fyelli",
    "gjethi",
    "gjeli",
    "guri",
    "guaska",
    "hena",
    "ishulli",
    "kali",
    "kapela",
    "karta",
    "kitara",
    "kodra",
    "kosi",
    "kulla",
    "kumbulla",
    "laps",
    "lepuri",
    "libri",
    "limoni",
    "liqeni",
    "lopa",
    "lugina",
    "lule",
    "lumi",
    "macja",
    "mal",
    "molla",
    "mjalti",
    "nata",
    "anija",
    "pema",
    "peshku",
    "pjeshka",
    "pylli",
    "pula",
    "qershia",
    "qeni",
    "qiell",
    "rosa",
    "rera",
    "reja",
    "rruga",
    "rrushi",
    "shiu",
    "shtepia",
    "sofra",
    "supa",
    "tavolina",
    "topi",
    "treni",
    "ura",
    "ujku",
    "vala",
    "varka",
    "vera",
    "vjeshta",
    "yll",
    "ylberi",
    "zogu",
    "zemra",
    "bima",
    "borziloku",
    "byreku",
    "dallga",
    "dielli",
    "drita",
    "fiori",
    "gota",
    "hardhia",
    "kalaja",
    "kaproll",
    "kafka",
    "kesh",
    "kuti",
    "lundra",
    "mali",
    "miku",
    "pallati",
    "pelikan",
    "perla",
    "pishina",
    "pulla",
    "qyteti",
    "rrathi",
    "sheshi",
    "shkalla",
    "shkolla",
    "shtegu",
    "sorra",
    "tasi",
    "tigri",
    "trendafili",
    "ulliri",
    "vapori",
    "veza",
    "zana",
    "zebra",
    "zinxhiri",
    "ylli",
    "balena",
    "delfini",
    "kaktusi",
    "kamomili",
    "kanarina",
    "koala",
    "luani",
)


def new_code() -> str:
    words = [secrets.choice(WORDS) for _ in range(3)]
    return f"{'-'.join(words)}-{secrets.randbelow(90) + 10}"


def normalise(code: str) -> str:
    """Forgiving of how a child types it: case, spaces or dots for dashes, ë for e."""
    text = unicodedata.normalize("NFKD", code.strip().lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    parts = [p for p in "".join(ch if ch.isalnum() else " " for ch in text).split() if p]
    return "-".join(parts)


def code_hash(secret: str, code: str) -> str:
    return hmac.new(
        secret.encode(), b"return-code:" + normalise(code).encode(), hashlib.sha256
    ).hexdigest()


class GuessLimiter:
    """Wrong guesses per address in a sliding window; memory only, never persisted.

    Bounded: the least recently seen addresses are forgotten first.
    """

    def __init__(self, *, attempts: int, window_s: float, max_addresses: int = 50_000) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        failures = self._failures.get(address)
        if failures is None:
            return False
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return len(failures) >= self.attempts

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        failures = self._failures.setdefault(address, deque())
        self._failures.move_to_end(address)
        failures.append(now)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
