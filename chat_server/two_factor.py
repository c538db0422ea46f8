"""The second factor for staff: TOTP (RFC 6238, via pyotp) and one-time recovery codes.

The shared secret is stored encrypted (AES-GCM, key derived from the secret key), so
a database dump alone cannot produce codes; recovery codes are stored as keyed hashes.
A code is accepted once: the step it belongs to is remembered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ISSUER = "ALO 116 111"
STEP_S = 30
# One step either side: phones whose clocks are up to 30 s off still work.
DRIFT_STEPS = 1
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_VERSION = "v1:"


class SecretUnreadable(Exception):
    """The stored secret cannot be decrypted (the secret key changed): enrol again."""


def new_secret() -> str:
    return pyotp.random_base32()


def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"alo116:totp-secret:v1", hashlib.sha256).digest()


def seal(secret_key: str, secret: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_key(secret_key)).encrypt(nonce, secret.encode(), b"totp")
    return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(secret_key: str, stored: str) -> str:
    if not stored.startswith(_VERSION):
        raise SecretUnreadable("unknown format")
    try:
        raw = base64.urlsafe_b64decode(stored[len(_VERSION) :])
        return AESGCM(_key(secret_key)).decrypt(raw[:12], raw[12:], b"totp").decode()
    except (InvalidTag, ValueError) as exc:
        raise SecretUnreadable("cannot decrypt") from exc


def current_step(at: float | None = None) -> int:
    return int((time.time() if at is None else at) // STEP_S)


def matching_step(
    secret: str, code: str, *, after_step: int | None, at: float | None = None
) -> int | None:
    """The step `code` is valid for, if it is one not used before; else None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now = current_step(at)
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if after_step is not None and step <= after_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def code_at(secret: str, step: int) -> str:
    """The code of a step (for tests and the set-up check)."""
    return pyotp.TOTP(secret).generate_otp(step)


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """The set-up QR code as an SVG data URI: an <img>, allowed by the CSP (img-src data:)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


# --- recovery codes ----------------------------------------------------------------------


def new_recovery_codes() -> list[str]:
    def one() -> str:
        chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        return f"{chars[:5]}-{chars[5:]}"

    return [one() for _ in range(RECOVERY_CODES)]


def looks_like_recovery_code(code: str) -> bool:
    return len(normalise_recovery(code)) == 10


def normalise_recovery(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def recovery_hash(secret_key: str, code: str) -> str:
    """Keyed and fast: the codes are random (about 50 bits), not chosen by people."""
    message = b"alo116:recovery-code:" + normalise_recovery(code).encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()
