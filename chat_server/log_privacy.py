"""Logs never carry a child's address, a message's text or a token.

Our own code logs none of them. Some libraries would, and are held back here:

- uvicorn logs every WebSocket handshake with the client's address and port
  (`'203.0.113.7:51234 - "WebSocket /ws/child" [accepted]'`) at INFO, even with the
  access log off: the address argument is replaced by "-".
- aiosqlite logs each statement with its parameters (message bodies) at DEBUG, and the
  websockets protocol under uvicorn logs each frame (bodies, tokens, return codes) at
  DEBUG on uvicorn.error: these loggers are kept at INFO, whatever the root level.

SQLAlchemy logs statements only when asked (echo) and the engines hide parameters in
errors and logs (`hide_parameters=True`, db/engine.py).
"""

from __future__ import annotations

import logging
import re

_ADDRESS = re.compile(r"^\[?[0-9A-Fa-f:.]+\]?:\d+$")
_REDACTED = "-"


class RedactAddresses(logging.Filter):
    """Replace "host:port" arguments of uvicorn's records (its handshake lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _REDACTED if isinstance(a, str) and _ADDRESS.match(a) else a for a in record.args
            )
        return True


_FILTER = RedactAddresses()
# A socket logs its frames if its logger is enabled for DEBUG when it opens.
_FRAMES_AND_STATEMENTS = ("aiosqlite", "uvicorn.error", "websockets")


def install() -> None:
    """Idempotent; call at startup, after the server configured logging."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for name in _FRAMES_AND_STATEMENTS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # NOTSET included: it would follow a DEBUG root
            logger.setLevel(logging.INFO)
