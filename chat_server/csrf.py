"""CSRF tokens for server-rendered staff forms: an HMAC of the session, keyed by the secret.

The token is bound to one staff session (a token from another session, or one made
without the secret, fails), needs no storage, and dies with the session it belongs to.
"""

from __future__ import annotations

import hashlib
import hmac

FIELD = "csrf"


def token(secret_key: str, session_cookie: str) -> str:
    session = hashlib.sha256(session_cookie.encode()).digest()
    return hmac.new(secret_key.encode(), b"csrf:v1:" + session, hashlib.sha256).hexdigest()


def valid(secret_key: str, session_cookie: str | None, candidate: str | None) -> bool:
    if not session_cookie or not candidate or len(candidate) != 64:
        return False
    return hmac.compare_digest(token(secret_key, session_cookie), candidate)
